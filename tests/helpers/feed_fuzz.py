"""Hypothesis strategies and checks shared by the feed protocol tests (not a test module)."""

from __future__ import annotations

import copy
import json
from typing import Any

import numpy as np
from hypothesis import strategies as st

from streamd.protocols.feeds.base import (
    Audio,
    Disconnect,
    Gap,
    Notice,
    ProtocolViolation,
    Reply,
    StreamClosed,
    StreamOpened,
)

EVENT_TYPES = (StreamOpened, Audio, Gap, StreamClosed, Notice, ProtocolViolation, Reply, Disconnect)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
    | st.sampled_from(
        ["", "0", "-1", "1e9", "PT1S", "PTS", "inbound", "external", "L16", "A" * 100]
    ),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


def _slots(node: Any) -> list[tuple[Any, Any]]:
    """Every (container, key) in a JSON tree, so a mutation can hit any depth."""
    found: list[tuple[Any, Any]] = []
    items = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else ()
    )
    for key, value in items:
        found.append((node, key))
        found.extend(_slots(value))
    return found


@st.composite
def mutated_json(draw: st.DrawFn, valid: dict[str, Any]) -> str:
    """A valid message with a few values replaced or deleted, sometimes truncated."""
    msg = copy.deepcopy(valid)
    for _ in range(draw(st.integers(1, 3))):
        slots = _slots(msg)
        if not slots:
            break
        container, key = draw(st.sampled_from(slots))
        if draw(st.booleans()) and isinstance(container, dict):
            del container[key]
        else:
            container[key] = draw(json_values)
    text = json.dumps(msg)
    if draw(st.integers(0, 9)) == 0:
        text = text[: draw(st.integers(0, len(text)))]
    return text


def check_events(events: Any) -> None:
    """What a session hands back is always a list of the shared event types, well formed."""
    assert isinstance(events, list)
    for event in events:
        assert isinstance(event, EVENT_TYPES), event
        if isinstance(event, Audio):
            assert event.samples.dtype == np.int16 and event.samples.ndim == 1
            assert event.samples.flags.writeable
        if isinstance(event, Gap):
            assert event.n_samples > 0
        if isinstance(event, Reply):
            json.dumps(event.message)  # must be sendable as JSON
