"""Print streamd events as they come; after any disconnect, resume after the last id seen.

    .venv/bin/python docs/examples/print_events.py                        # alerts and call ends
    .venv/bin/python docs/examples/print_events.py --since 0 --types all  # everything still stored

A daemon restart, a 1013 close (this client was too slow) or a network error all end the same
way: reconnect with ``since=<last id>``, which replays what was missed with no gap and no
duplicate. Keep the last id on disk to resume across restarts of this script too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
from typing import Any

import aiohttp


def line(event: dict[str, Any]) -> str:
    """One line per event; fields missing from older schema versions are left out."""
    s = event.get("stream") or {}
    head = f"#{event['id']} {event['ts'][11:23]} {event['type']:<14}"  # UTC time of day
    kind = event["type"]
    if kind == "daemon.status":
        return f"{head} state={event.get('state')}"
    who = f"{s.get('source')} {s.get('leg')} call={s.get('call_id')}"
    w = event.get("window") or {}
    span = f"window={w.get('start_s')}-{w.get('end_s')} s"
    if kind == "window.scored":
        return f"{head} {who} score={event['score']:.3f} smoothed={event['smoothed']:.3f} {span}"
    if kind in ("alert.raised", "alert.cleared"):
        smoothed = event.get("smoothed", event.get("score"))
        why = f" reason={event['reason']}" if "reason" in event else ""
        return f"{head} {who} smoothed={smoothed:.3f}{why} {span}"
    if kind == "alert.acknowledged":
        return f"{head} {who} alert=#{event.get('alert_id')} by={event.get('by')!r}"
    if kind == "stream.ended":
        m = event.get("summary") or {}
        keys = ("reason", "windows", "max_score", "alert_raised")
        return f"{head} {who} " + " ".join(f"{k}={m.get(k)}" for k in keys)
    return f"{head} {who}"


async def follow(url: str, token: str | None, since: int | None, types: str) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    last_id = since
    async with aiohttp.ClientSession(headers=headers) as session:
        while True:
            params = {} if types == "all" else {"types": types}
            if last_id is not None:
                params["since"] = str(last_id)
            try:
                async with session.ws_connect(
                    f"{url}/v1/events", params=params, heartbeat=30
                ) as ws:
                    async for msg in ws:
                        if msg.type is not aiohttp.WSMsgType.TEXT:
                            break
                        event = json.loads(msg.data)
                        last_id = event["id"]
                        print(line(event), flush=True)
                print(f"closed ({ws.close_code}); resuming after #{last_id}", flush=True)
            except aiohttp.ClientError as exc:
                print(f"{exc}; retrying", flush=True)
            if last_id is None:
                last_id = 0  # resume from the start of what is stored rather than miss anything
            await asyncio.sleep(1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default=os.environ.get("STREAMD_URL", "http://127.0.0.1:8080"))
    p.add_argument("--token", default=os.environ.get("STREAMD_TOKEN"), help="bearer token")
    p.add_argument("--since", type=int, help="replay stored events after this id first")
    p.add_argument(
        "--types",
        default="alert.raised,alert.cleared,stream.ended",
        help="comma-separated event types, or 'all'",
    )
    args = p.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(follow(args.url.rstrip("/"), args.token, args.since, args.types))


if __name__ == "__main__":
    main()
