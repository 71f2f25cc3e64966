"""deploy/kamailio/kamailio.cfg with Debian's Kamailio in front of two daemons: sipp calls are
spread by Call-ID over both; a node that stops gets no new calls (OPTIONS probing)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.feeds import of
from tests.helpers.kamailio import KAMAILIO, Kamailio
from tests.helpers.sip import LAWS, free_udp_port, g711_speech, need_sipp, run_sipp, sip_daemon

pytestmark = pytest.mark.skipif(
    KAMAILIO is None, reason="kamailio not installed (scripts/setup --dev)"
)


async def place_calls(
    folder: Path, kamailio: Kamailio, coded: bytes, n: int, scenario: str = "uac_g711.xml"
) -> None:
    folder.mkdir()
    (folder / "speech.g711").write_bytes(coded)
    code, out = await run_sipp(
        folder,
        kamailio.port,
        "-d",
        "1200",
        "-mp",
        str(free_udp_port(even=True)),
        "-m",
        str(n),
        "-r",
        "4",
        "-l",
        str(n),
        scenario=scenario,
        subs={"PT": str(LAWS["PCMU"][0]), "CODEC": "PCMU"},
        timeout=40,
    )
    assert code == 0, out + "\n" + kamailio.log()


def call_ids(events: Any) -> set[str]:
    return {e["stream"]["call_id"] for e in of(events.events, "stream.started")}


def legs(events: Any, call_id: str) -> set[str]:
    return {
        e["stream"]["leg"]
        for e in of(events.events, "stream.started")
        if e["stream"]["call_id"] == call_id
    }


async def test_calls_spread_by_call_id_and_move_off_a_stopped_node(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    need_sipp()
    coded, _, _ = g711_speech(1.0, "PCMU")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async with contextlib.AsyncExitStack() as stack_a:
        _, events_a, sip_a = await stack_a.enter_async_context(
            sip_daemon(tiny_model_dir, tmp_path / "a", tcp=False)
        )
        stack_b = contextlib.AsyncExitStack()
        try:
            _, events_b, sip_b = await stack_b.enter_async_context(
                sip_daemon(tiny_model_dir, tmp_path / "b", tcp=False)
            )
            uri_a, uri_b = f"sip:127.0.0.1:{sip_a.port}", f"sip:127.0.0.1:{sip_b.port}"
            with Kamailio(tmp_path, [sip_a.port, sip_b.port]).start() as kam:
                await asyncio.to_thread(kam.wait_flags, uri_a, "AP")
                await asyncio.to_thread(kam.wait_flags, uri_b, "AP")
                # 12 calls with sipp's Call-IDs: all on one node has odds 2/4096.
                await place_calls(tmp_path / "first", kam, coded, 12)
                await events_a.wait_for(
                    lambda _: len(call_ids(events_a)) + len(call_ids(events_b)) >= 12, 20
                )
                first_a, first_b = call_ids(events_a), call_ids(events_b)
                assert first_a and first_b, (first_a, first_b)
                assert not first_a & first_b and len(first_a | first_b) == 12

                # SIPREC sessions (multipart INVITE, two labelled legs) go the same way: both
                # legs of a session on one node.
                await place_calls(tmp_path / "siprec", kam, coded, 2, scenario="siprec.xml")
                await events_a.wait_for(
                    lambda _: len(call_ids(events_a)) + len(call_ids(events_b)) >= 14, 20
                )
                for events, before in ((events_a, first_a), (events_b, first_b)):
                    for cid in call_ids(events) - before:
                        assert legs(events, cid) == {"caller", "agent"}, cid
                first_a = call_ids(events_a)

                await stack_b.aclose()  # node b stops: its OPTIONS go unanswered
                await asyncio.to_thread(kam.wait_flags, uri_b, "I")
                assert kam.dispatcher()[uri_a].startswith("A")  # type: ignore[index]
                await place_calls(tmp_path / "second", kam, coded, 6)
                await events_a.wait_for(lambda _: len(call_ids(events_a)) >= len(first_a) + 6, 20)
                assert len(call_ids(events_a) - first_a) == 6
        finally:
            await stack_b.aclose()
