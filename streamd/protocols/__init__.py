"""Sans-I/O protocol code: pure parsers and builders, no sockets, no asyncio."""
