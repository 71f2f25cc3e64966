"""Websocket and TCP contact-center feeds: asyncio adapters over protocols.feeds."""
