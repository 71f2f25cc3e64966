"""Sans-I/O parsers and state machines of the contact-center feed protocols."""
