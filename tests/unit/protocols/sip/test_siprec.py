"""SIPREC metadata: participants, streams by label, caller/agent rule, unsafe XML, fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamd.errors import ProtocolError
from streamd.protocols.sip.message import parse_message
from streamd.protocols.sip.sdp import build_answer, parse_sdp
from streamd.protocols.sip.siprec import (
    Participant,
    SiprecError,
    normalize_aor,
    parse_metadata,
)

from tests.helpers.sip_samples import (
    AGENT_ID,
    CALLER_ID,
    SESSION_ID,
    SIPREC_METADATA,
    STREAM_1,
    STREAM_2,
    siprec_invite,
)


def test_parse_rfc7865_metadata() -> None:
    metadata = parse_metadata(SIPREC_METADATA.encode())
    assert metadata.datamode == "complete" and metadata.groups == ("7+OTCyoxTmqmqyA/1weDAg==",)
    (session,) = metadata.sessions
    assert session.session_id == SESSION_ID and session.group_id == "7+OTCyoxTmqmqyA/1weDAg=="
    assert session.sip_session_ids == (
        "ab30317f1a784dc48ff824d0d3715d86;remote=47755a9de7794ba387653f2099600ef2",
    )
    assert metadata.participants == (
        Participant(
            CALLER_ID,
            "sip:+15551230001@carrier.example.net",
            "Alice Caller",
            (STREAM_1,),
            (STREAM_2,),
        ),
        Participant(
            AGENT_ID, "sip:agent42@callcenter.example.com", "Agent 42", (STREAM_2,), (STREAM_1,)
        ),
    )
    assert [(s.stream_id, s.label, s.session_id) for s in metadata.streams] == [
        (STREAM_1, "1", SESSION_ID), (STREAM_2, "2", SESSION_ID),
    ]  # fmt: skip


def test_label_map_by_document_order() -> None:
    owners = parse_metadata(SIPREC_METADATA).label_map()
    assert set(owners) == {"1", "2"}
    assert (owners["1"].role, owners["1"].aor, owners["1"].name) == (
        "caller", "sip:+15551230001@carrier.example.net", "Alice Caller",
    )  # fmt: skip
    assert (owners["2"].role, owners["2"].participant_id) == ("agent", AGENT_ID)
    assert owners["1"].role_rule == "order" and owners["2"].sip_session_ids[0].startswith(
        "ab30317f"
    )


def test_caller_aor_from_the_original_call_wins_over_order() -> None:
    metadata = parse_metadata(SIPREC_METADATA)
    owners = metadata.label_map(caller_aor="<sips:Agent42@CallCenter.example.com;transport=tls>")
    assert (owners["2"].role, owners["1"].role, owners["2"].role_rule) == (
        "caller",
        "agent",
        "from",
    )
    # An AOR that matches nobody falls back to document order.
    assert metadata.label_map(caller_aor="sip:nobody@example.com")["1"].role == "caller"


def test_reversed_document_order_reverses_roles() -> None:
    head, agent = SIPREC_METADATA.split(f'  <participant participant_id="{AGENT_ID}">', 1)
    agent_block, rest = agent.split("</participant>\n", 1)
    start = head.index(f'  <participant participant_id="{CALLER_ID}">')
    reordered = (
        head[:start] + f'  <participant participant_id="{AGENT_ID}">' + agent_block
        + "</participant>\n" + head[start:] + rest
    )  # fmt: skip
    owners = parse_metadata(reordered).label_map()
    assert (owners["1"].role, owners["2"].role) == ("agent", "caller")


def test_draft_era_participant_format_without_namespace() -> None:
    xml = """<recording>
      <participant id="p1"><aor>sip:alice@example.com</aor><name>Alice</name><send>s1</send></participant>
      <participant id="p2"><aor>sip:bob@example.com</aor><send>s2</send><recv>s1</recv></participant>
      <stream id="s1"><label>10</label></stream>
      <stream id="s2"><label>11</label></stream>
    </recording>"""  # noqa: E501
    owners = parse_metadata(xml).label_map()
    assert (owners["10"].aor, owners["10"].name, owners["10"].role) == (
        "sip:alice@example.com",
        "Alice",
        "caller",
    )
    assert (owners["11"].aor, owners["11"].name, owners["11"].role) == (
        "sip:bob@example.com",
        None,
        "agent",
    )


def test_conference_with_three_senders_guesses_no_roles() -> None:
    xml = (
        "<recording xmlns='urn:ietf:params:xml:ns:recording:1'>"
        + "".join(
            f"<participant participant_id='p{i}'><nameID aor='sip:u{i}@x'/></participant>"
            f"<stream stream_id='s{i}'><label>{i}</label></stream>"
            f"<participantstreamassoc participant_id='p{i}'>"
            f"<send>s{i}</send></participantstreamassoc>"
            for i in range(3)
        )
        + "<stream stream_id='mixed'/></recording>"
    )
    owners = parse_metadata(xml).label_map()
    assert sorted(owners) == ["0", "1", "2"]  # the unlabelled stream is left out
    assert {o.role for o in owners.values()} == {None} and owners["2"].aor == "sip:u2@x"


def test_partial_update_merges_by_id() -> None:
    base = parse_metadata(SIPREC_METADATA)
    update = parse_metadata(
        "<recording xmlns='urn:ietf:params:xml:ns:recording:1'><datamode>partial</datamode>"
        "<participant participant_id='new'><nameID aor='sip:supervisor@x'/></participant>"
        "<stream stream_id='s3'><label>3</label></stream>"
        "<participantstreamassoc participant_id='new'><send>s3</send></participantstreamassoc>"
        "</recording>"
    )
    merged = base.merged(update)
    assert [p.participant_id for p in merged.participants] == [CALLER_ID, AGENT_ID, "new"]
    assert set(merged.label_map()) == {"1", "2", "3"}
    assert merged.label_map()["3"].role is None  # three senders now: no guess
    complete = parse_metadata("<recording><datamode>complete</datamode></recording>")
    assert base.merged(complete) == complete


def test_normalize_aor() -> None:
    assert normalize_aor("<sip:Alice@Example.COM;user=phone>") == "alice@example.com"
    assert normalize_aor("tel:+15551230001") == "+15551230001"


@pytest.mark.parametrize(
    "xml",
    [
        # Billion laughs: refused before the parser expands anything.
        '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
        "<recording><participant participant_id='&b;'/></recording>",
        '<!DOCTYPE recording SYSTEM "http://attacker.example/x.dtd"><recording/>',
        "<recording><!ENTITY x 'y'></recording>",
        "<recording><participant/></recording>",
        "<recording><stream><label>1</label></stream></recording>",
        "<recording><session/></recording>",
        "<recording><participantstreamassoc><send>x</send></participantstreamassoc></recording>",
        "<notrecording/>",
        "<recording>",
        "",
        "<recording>&undefined;</recording>",
    ],
)  # fmt: skip
def test_bad_or_unsafe_metadata(xml: str) -> None:
    with pytest.raises(SiprecError):
        parse_metadata(xml)


def test_non_utf8_and_oversized_metadata() -> None:
    with pytest.raises(SiprecError, match="UTF-8"):
        parse_metadata(
            SIPREC_METADATA.replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16")
        )
    with pytest.raises(SiprecError, match="larger"):
        parse_metadata("<recording>" + " " * 300_000 + "</recording>")


def test_siprec_invite_end_to_end_through_the_pure_layers() -> None:
    """What the SIP adapter will do: INVITE -> parts -> answer + label map -> one stream per
    m-line."""
    invite = parse_message(siprec_invite())
    parts = {p.content_type: p.body for p in invite.body_parts()}
    offer = parse_sdp(parts["application/sdp"])
    owners = parse_metadata(parts["application/rs-metadata+xml"]).label_map()
    answer = build_answer(offer, "192.0.2.5", [40000, 40002])
    legs = [
        (
            m.local_port,
            m.codec.encoding if m.codec else None,
            owners[m.label].role,
            owners[m.label].aor,
        )
        for m in answer.media
        if m.label is not None
    ]
    assert legs == [
        (40000, "PCMU", "caller", "sip:+15551230001@carrier.example.net"),
        (40002, "PCMA", "agent", "sip:agent42@callcenter.example.com"),
    ]


def _check(data: bytes | str) -> None:
    try:
        metadata = parse_metadata(data)
    except ProtocolError as exc:
        assert isinstance(exc, SiprecError)
        return
    for owner in metadata.label_map(caller_aor="sip:x@y").values():
        assert owner.role in (None, "caller", "agent")


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(data: bytes) -> None:
    _check(data)


@settings(max_examples=500)
@given(
    edits=st.lists(st.tuples(st.integers(0, 5000), st.sampled_from([
        "", "<", ">", "/", '"', "'", "&", "=", "<!", "x", "\x00", "é",
    ])), min_size=1, max_size=4),
)  # fmt: skip
def test_fuzz_structured_mutations(edits: list[tuple[int, str]]) -> None:
    text = SIPREC_METADATA
    for position, insert in edits:
        position %= len(text)
        text = text[:position] + insert + text[position + (1 if insert == "" else 0) :]
    _check(text)
