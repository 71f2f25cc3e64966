"""SIPREC recording metadata (``application/rs-metadata+xml``, RFC 7865; RFC 7866 carries it).

A Session Recording Client (an SBC or PBX) sends one INVITE with one m-line per recorded
stream, each tagged ``a=label:N``, and this XML saying who sends each labelled stream. We only
need "label -> whose voice", so the parser keeps participants, streams, their associations and
the communication sessions (for the original ``sipSessionID``), and ignores the rest.

Who is the caller? RFC 7865 has no role field, so :meth:`RecordingMetadata.label_map` decides:

1. If ``caller_aor`` is given (the From of the original call, when the adapter knows it) and
   matches exactly one sending participant's AOR, that participant is ``caller``.
2. Otherwise, with exactly two sending participants, document order decides: the first
   ``<participant>`` element is ``caller``, the second ``agent``. The common SRCs list the
   originating party first, but the RFC does not promise it; the adapter should say which rule
   applied (``role_rule``) in the stream's labels.
3. With one, or more than two, sending participants no roles are guessed (``role`` is None).

The XML comes from the network: DOCTYPE and ENTITY declarations are refused before expat sees
them (no entity-expansion bombs, no external entities), and the size is capped.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from typing import Any

from streamd.errors import ProtocolError

NAMESPACE = "urn:ietf:params:xml:ns:recording:1"
CONTENT_TYPE = "application/rs-metadata+xml"
MAX_METADATA_SIZE = 256 * 1024
_DECLARATION = re.compile(rb"<!(?!--|\[CDATA\[)")


class SiprecError(ProtocolError):
    """Recording metadata that is not well-formed, unsafe, or not RFC 7865."""


@dataclass(frozen=True, slots=True)
class Participant:
    participant_id: str
    aor: str | None = None
    name: str | None = None
    send: tuple[str, ...] = ()
    recv: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MediaStream:
    stream_id: str
    label: str | None = None
    session_id: str | None = None


@dataclass(frozen=True, slots=True)
class CommunicationSession:
    session_id: str
    sip_session_ids: tuple[str, ...] = ()
    group_id: str | None = None


@dataclass(frozen=True, slots=True)
class StreamOwner:
    """What the adapter needs for one labelled m-line: whose voice it is."""

    label: str
    stream_id: str
    participant_id: str | None
    aor: str | None
    name: str | None
    role: str | None
    role_rule: str | None
    session_id: str | None
    sip_session_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RecordingMetadata:
    datamode: str | None = None
    groups: tuple[str, ...] = ()
    sessions: tuple[CommunicationSession, ...] = ()
    participants: tuple[Participant, ...] = ()
    streams: tuple[MediaStream, ...] = ()

    def sender_of(self, stream_id: str) -> Participant | None:
        """The participant that sends ``stream_id`` (the first, if the SRC lists several)."""
        return next((p for p in self.participants if stream_id in p.send), None)

    def roles(self, caller_aor: str | None = None) -> tuple[dict[str, str], str | None]:
        """participant_id -> ``caller``/``agent`` and the rule used (see the module docstring)."""
        senders = [p for p in self.participants if p.send]
        if caller_aor is not None:
            wanted = normalize_aor(caller_aor)
            hits = [p for p in senders if p.aor and normalize_aor(p.aor) == wanted]
            if len(hits) == 1:
                return {
                    p.participant_id: "caller" if p is hits[0] else "agent" for p in senders
                }, "from"
        if len(senders) == 2:
            return {senders[0].participant_id: "caller", senders[1].participant_id: "agent"}, (
                "order"
            )
        return {}, None

    def label_map(self, caller_aor: str | None = None) -> dict[str, StreamOwner]:
        """label -> owner, for every stream that has a label."""
        roles, rule = self.roles(caller_aor)
        sessions = {s.session_id: s for s in self.sessions}
        result: dict[str, StreamOwner] = {}
        for stream in self.streams:
            if stream.label is None:
                continue
            sender = self.sender_of(stream.stream_id)
            session = sessions.get(stream.session_id or "")
            if session is None and len(self.sessions) == 1:
                session = self.sessions[0]
            pid = sender.participant_id if sender else None
            result[stream.label] = StreamOwner(
                label=stream.label,
                stream_id=stream.stream_id,
                participant_id=pid,
                aor=sender.aor if sender else None,
                name=sender.name if sender else None,
                role=roles.get(pid or ""),
                role_rule=rule if pid in roles else None,
                session_id=session.session_id if session else stream.session_id,
                sip_session_ids=session.sip_session_ids if session else (),
            )
        return result

    def merged(self, update: RecordingMetadata) -> RecordingMetadata:
        """Apply a ``partial`` update (RFC 7865 §6.1): elements replace those with the same id."""
        if update.datamode != "partial":
            return update

        def merge(old: tuple[Any, ...], new: tuple[Any, ...], key: str) -> tuple[Any, ...]:
            by_id = {getattr(item, key): item for item in old}
            by_id.update({getattr(item, key): item for item in new})
            return tuple(by_id.values())

        return replace(
            self,
            groups=tuple(dict.fromkeys(self.groups + update.groups)),
            sessions=merge(self.sessions, update.sessions, "session_id"),
            participants=merge(self.participants, update.participants, "participant_id"),
            streams=merge(self.streams, update.streams, "stream_id"),
        )


def normalize_aor(aor: str) -> str:
    """``<sips:Alice@Example.com;transport=tls>`` -> ``alice@example.com``, to compare AORs."""
    text = aor.strip().strip("<>").strip()
    text = re.sub(r"^(sips?|tel):", "", text, flags=re.IGNORECASE)
    return text.split(";", 1)[0].split("?", 1)[0].lower()


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _children(element: ET.Element, name: str) -> list[ET.Element]:
    return [child for child in element if _local(child.tag) == name]


def _text(element: ET.Element, name: str) -> str | None:
    for child in _children(element, name):
        value = (child.text or "").strip()
        if value:
            return value
    return None


def _attr(element: ET.Element, *names: str) -> str | None:
    for name in names:
        value = element.get(name)
        if value is not None and value.strip():
            return value.strip()
    return None


def _load(data: bytes | str) -> ET.Element:
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if len(raw) > MAX_METADATA_SIZE:
        raise SiprecError(f"metadata larger than {MAX_METADATA_SIZE} bytes")
    if b"\x00" in raw:
        raise SiprecError("metadata must be UTF-8")
    if _DECLARATION.search(raw):
        raise SiprecError("DOCTYPE/ENTITY declarations are not allowed in metadata")
    try:
        parser = ET.XMLParser()
        parser.feed(raw)
        return parser.close()
    except (ET.ParseError, ValueError, LookupError) as exc:
        raise SiprecError(f"metadata is not well-formed XML: {exc}") from exc


def parse_metadata(data: bytes | str) -> RecordingMetadata:
    """Parse RFC 7865 metadata. Namespaces are matched by local name, since SRCs vary."""
    root = _load(data)
    if _local(root.tag) != "recording":
        raise SiprecError(f"root element is {_local(root.tag)!r}, not 'recording'")

    sessions: list[CommunicationSession] = []
    for element in _children(root, "session"):
        session_id = _attr(element, "session_id", "id")
        if session_id is None:
            raise SiprecError("<session> without session_id")
        sip_ids = tuple(
            (child.text or "").strip()
            for child in _children(element, "sipSessionID")
            if (child.text or "").strip()
        )
        sessions.append(CommunicationSession(session_id, sip_ids, _text(element, "group-ref")))

    streams: list[MediaStream] = []
    for element in _children(root, "stream"):
        stream_id = _attr(element, "stream_id", "id")
        if stream_id is None:
            raise SiprecError("<stream> without stream_id")
        streams.append(
            MediaStream(stream_id, _text(element, "label"), _attr(element, "session_id"))
        )

    sends: dict[str, list[str]] = {}
    recvs: dict[str, list[str]] = {}
    for element in _children(root, "participantstreamassoc"):
        pid = _attr(element, "participant_id", "id")
        if pid is None:
            raise SiprecError("<participantstreamassoc> without participant_id")
        sends.setdefault(pid, []).extend(_texts(element, "send"))
        recvs.setdefault(pid, []).extend(_texts(element, "recv"))

    participants: list[Participant] = []
    for element in _children(root, "participant"):
        pid = _attr(element, "participant_id", "id")
        if pid is None:
            raise SiprecError("<participant> without participant_id")
        aor, name = _participant_identity(element)
        send = tuple(dict.fromkeys(_texts(element, "send") + sends.get(pid, [])))
        recv = tuple(dict.fromkeys(_texts(element, "recv") + recvs.get(pid, [])))
        participants.append(Participant(pid, aor, name, send, recv))

    groups = tuple(g for e in _children(root, "group") if (g := _attr(e, "group_id", "id")))
    return RecordingMetadata(
        datamode=_text(root, "datamode"),
        groups=groups,
        sessions=tuple(sessions),
        participants=tuple(participants),
        streams=tuple(streams),
    )


def _texts(element: ET.Element, name: str) -> list[str]:
    return [v for child in _children(element, name) if (v := (child.text or "").strip())]


def _participant_identity(element: ET.Element) -> tuple[str | None, str | None]:
    """AOR and display name: ``<nameID aor=...><name>`` (RFC 7865), or the draft-era
    ``<aor>``/``<name>`` children that some SRCs still send."""
    for name_id in _children(element, "nameID"):
        aor = _attr(name_id, "aor")
        if aor is not None:
            return aor, _text(name_id, "name")
    return _text(element, "aor"), _text(element, "name")
