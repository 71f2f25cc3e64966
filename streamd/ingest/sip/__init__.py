"""SIP and SIPREC over UDP/TCP: sockets and timers over the sans-I/O protocols.sip."""
