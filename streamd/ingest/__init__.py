"""Adapters that turn a transport (file, mic, SIP/RTP, WebRTC, websocket feeds) into streams."""
