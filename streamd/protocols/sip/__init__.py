"""Sans-I/O SIP: messages, headers, SDP, SIPREC metadata; no sockets, no clock."""
