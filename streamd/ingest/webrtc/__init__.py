"""WebRTC peers (aiortc): HTTP offer/answer signalling and media to the hub."""
