"""One aiohttp server per daemon: events websocket, health, metrics, and routes from HTTP
sources."""
