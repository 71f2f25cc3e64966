"""Feed connections per source address and per credential: one peer or one leaked key cannot
take every slot of a feed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus

from tests.helpers.feeds import closed_by_peer, feed_daemon, source, ws_connect, ws_url


async def test_audiosocket_connections_per_address(tiny_model_dir: Path, tmp_path: Path) -> None:
    feed = {"port": 0, "max_connections_per_source": 2}
    async with feed_daemon(tiny_model_dir, tmp_path, audiosocket=feed) as (daemon, _):
        s = source(daemon, "audiosocket")
        peers = [await asyncio.open_connection(s.host, s.port) for _ in range(2)]
        for _ in range(100):  # bounded: until the daemon counted both (at most 1 s)
            if s.status()["connections"] == 2:
                break
            await asyncio.sleep(0.01)
        reader, writer = await asyncio.open_connection(s.host, s.port)
        assert await closed_by_peer(reader)  # the third from 127.0.0.1 is refused
        status = s.status()
        assert status["connections"] == 2 and status["refused_per_source"] == 1
        for _, w in [*peers, (reader, writer)]:
            w.close()


async def test_websocket_feed_connections_per_credential(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    feed = {"max_connections_per_source": 2}
    server = {"tokens": ["key-a", "key-b"]}
    async with feed_daemon(tiny_model_dir, tmp_path, server, audiofork=feed) as (daemon, _):
        url = ws_url(daemon, "/v1/ingest/audiofork")
        open_ = [await ws_connect(url, additional_headers={"Authorization": "Bearer key-a"})]
        with pytest.raises(InvalidStatus) as refused:  # same address: 2 is the limit
            open_.append(
                await ws_connect(url, additional_headers={"Authorization": "Bearer key-b"})
            )
            await ws_connect(url, additional_headers={"Authorization": "Bearer key-b"})
        assert refused.value.response.status_code == 503
        assert source(daemon, "audiofork").status()["refused_per_source"] == 1
        for ws in open_:
            await ws.close()
        for _ in range(100):  # both slots come back once the connections are gone
            if source(daemon, "audiofork").status()["connections"] == 0:
                break
            await asyncio.sleep(0.01)
        again = await ws_connect(url, additional_headers={"Authorization": "Bearer key-a"})
        await again.close()


def test_a_connection_counts_against_its_address_and_its_credential() -> None:
    from aiohttp.test_utils import make_mocked_request

    from streamd.ingest.feeds.websocket import source_keys

    bearer = make_mocked_request("GET", "/", headers={"Authorization": "Bearer key-a"})
    api_key = make_mocked_request("GET", "/?x=1", headers={"X-API-KEY": "key-a"})
    other = make_mocked_request("GET", "/?token=key-b")
    anonymous = make_mocked_request("GET", "/")
    a, b, c, d = (source_keys(r) for r in (bearer, api_key, other, anonymous))
    assert a[1] == b[1] and a[1] != c[1] and len(d) == 1  # same key, however it is sent
    assert all("key-" not in k for k in (*a, *c))  # no secret kept in a counter
