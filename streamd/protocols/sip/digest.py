"""SIP digest authentication (RFC 3261 §22, RFC 7616 as RFC 8760 brings it to SIP), sans-I/O.

An option on top of ``allow_from``: a request from an allowed address must also carry
credentials. :meth:`DigestAuth.challenge` gives the ``WWW-Authenticate`` values of a 401 (one per
algorithm, SHA-256 first: RFC 8760 §2.4 has the client use the first it supports);
:meth:`DigestAuth.check` verifies an ``Authorization`` value. ``qop=auth`` is required (no
RFC 2069 digests). The digest ``uri`` must be the Request-URI or name the same host and port.

Nonces are stateless: a timestamp and random bytes signed with a per-process HMAC key, so a
challenge costs no memory and a forged or foreign nonce fails the signature. A nonce older than
``nonce_ttl_s`` is *stale*: the 401 says ``stale=true`` and the client retries with the same
password without asking the user. Replays are refused by nonce count: each nonce remembers the
highest ``nc`` used, in a table bounded oldest-first; a nonce issued before the newest one pushed
out of it is refused as stale, so none is ever accepted twice. Time is passed in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import struct
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from streamd.protocols.sip.headers import split_list

ALGORITHMS = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}
MAX_NONCES = 4096
MAX_HEADER = 2048  # an Authorization value longer than this is refused unparsed
_PARAM = re.compile(r'([A-Za-z0-9\-_]+)[ \t]*=[ \t]*("(?:[^"\\]|\\.)*"|[^\s",]+)')

Verdict = Literal["ok", "missing", "stale", "bad"]


@dataclass(frozen=True)
class Outcome:
    """What :meth:`DigestAuth.check` found: ``ok``; ``missing`` (no credentials for our realm);
    ``stale`` (an expired or forgotten nonce: challenge again with ``stale=true``); ``bad``
    (wrong password, unknown user, forged nonce, replayed count), with why for the log."""

    verdict: Verdict
    username: str | None = None
    why: str = ""

    @property
    def ok(self) -> bool:
        return self.verdict == "ok"


def parse_credentials(value: str) -> dict[str, str]:
    """``Digest username="a", nc=00000001, ...`` -> lower-cased names, unquoted values.
    Raises ValueError for another scheme or a malformed list."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        raise ValueError(f"not a Digest credential ({scheme[:20]!r})")
    params: dict[str, str] = {}
    for item in split_list(rest):
        match = _PARAM.fullmatch(item.strip())
        if match is None:
            raise ValueError(f"malformed auth-param {item[:40]!r}")
        name, raw = match.group(1).lower(), match.group(2)
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        if name in params:
            raise ValueError(f"auth-param {name} given twice")
        params[name] = raw
    return params


def _host_of(uri: str) -> str:
    """``sip:user@host:port;params`` -> ``host:port`` (sipp, like many UACs, puts the server's
    address in the digest uri rather than the whole Request-URI)."""
    scheme, _, rest = uri.partition(":")
    return rest.rpartition("@")[2].split(";")[0].split("?")[0].lower() if scheme else ""


def digest_response(
    algorithm: str,
    *,
    username: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    nc: str,
    cnonce: str,
    qop: str = "auth",
) -> str:
    """The ``response`` value (RFC 7616 §3.4.1), for ``qop=auth``: what a client computes."""
    h = ALGORITHMS[algorithm]

    def hex_of(text: str) -> str:
        return h(text.encode("utf-8")).hexdigest()

    ha1 = hex_of(f"{username}:{realm}:{password}")
    ha2 = hex_of(f"{method}:{uri}")
    return hex_of(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


class DigestAuth:
    """Challenges and checks for one realm; ``users`` maps user names to passwords."""

    def __init__(
        self,
        realm: str,
        users: Mapping[str, str],
        *,
        algorithms: Sequence[str] = ("SHA-256", "MD5"),
        nonce_ttl_s: float = 300.0,
        key: bytes | None = None,
    ) -> None:
        unknown = [a for a in algorithms if a not in ALGORITHMS]
        if unknown or not algorithms:
            raise ValueError(f"digest algorithms must be among {sorted(ALGORITHMS)}: {unknown}")
        self.realm = realm
        self.users = dict(users)
        self.algorithms = tuple(algorithms)
        self.nonce_ttl_s = nonce_ttl_s
        self._key = key or secrets.token_bytes(32)
        self._counts: OrderedDict[str, tuple[int, float]] = OrderedDict()  # nonce -> (nc, issued)
        self._floor = float("-inf")  # nonces issued up to this were pushed out: stale

    # -- nonces --------------------------------------------------------------------------------

    def _sign(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, hashlib.sha256).digest()[:16]

    def new_nonce(self, now: float) -> str:
        body = struct.pack(">d", now) + secrets.token_bytes(8)
        return base64.urlsafe_b64encode(body + self._sign(body)).decode().rstrip("=")

    def _nonce_age(self, nonce: str, now: float) -> float | None:
        """Seconds since we issued ``nonce``; None if we did not."""
        try:
            raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
        except (ValueError, TypeError):
            return None
        if len(raw) != 32 or not hmac.compare_digest(raw[16:], self._sign(raw[:16])):
            return None
        (issued,) = struct.unpack(">d", raw[:8])
        return float(now - issued)

    # -- the two entry points ------------------------------------------------------------------

    def challenge(self, now: float, *, stale: bool = False) -> list[str]:
        """``WWW-Authenticate`` values for a 401, one per algorithm (same nonce)."""
        nonce = self.new_nonce(now)
        extra = ", stale=true" if stale else ""
        return [
            f'Digest realm="{self.realm}", nonce="{nonce}", algorithm={a}, qop="auth"{extra}'
            for a in self.algorithms
        ]

    def check(self, method: str, uri: str, authorization: Sequence[str], now: float) -> Outcome:
        """Verify the request's ``Authorization`` values (the one for our realm counts)."""
        creds: dict[str, str] | None = None
        for value in authorization:
            if len(value) > MAX_HEADER:
                return Outcome("bad", why=f"Authorization longer than {MAX_HEADER} bytes")
            try:
                params = parse_credentials(value)
            except ValueError as exc:
                return Outcome("bad", why=str(exc))
            if params.get("realm") == self.realm:
                creds = params
                break
        if creds is None:
            return Outcome("missing")
        user = creds.get("username")
        needed = ("username", "nonce", "uri", "response", "qop", "nc", "cnonce")
        absent = [k for k in needed if not creds.get(k)]
        if absent:
            return Outcome("bad", user, f"missing {', '.join(absent)}")
        assert user is not None
        algorithm = creds.get("algorithm", "MD5")
        algorithm = next((a for a in self.algorithms if a.lower() == algorithm.lower()), algorithm)
        if algorithm not in self.algorithms:
            return Outcome("bad", user, f"algorithm {algorithm[:20]!r} not offered")
        if creds["qop"].lower() != "auth":
            return Outcome("bad", user, f"qop {creds['qop'][:20]!r} is not auth")
        if creds["uri"] != uri and _host_of(creds["uri"]) != _host_of(uri):
            return Outcome("bad", user, f"digest uri {creds['uri'][:80]!r} is not {uri[:80]!r}")
        nonce, nc_text = creds["nonce"], creds["nc"]
        if not re.fullmatch(r"[0-9a-fA-F]{8}", nc_text):
            return Outcome("bad", user, "malformed nc")
        age = self._nonce_age(nonce, now)
        if age is None:
            return Outcome("bad", user, "nonce not ours")
        if age > self.nonce_ttl_s or age < -1.0:
            return Outcome("stale", user, "nonce expired")
        password = self.users.get(user)
        if password is None:
            return Outcome("bad", user, "unknown user")
        expected = digest_response(
            algorithm,
            username=user,
            realm=self.realm,
            password=password,
            method=method,
            uri=creds["uri"],
            nonce=nonce,
            nc=nc_text,
            cnonce=creds["cnonce"],
        )
        given = creds["response"].lower().encode("utf-8", "replace")
        if not hmac.compare_digest(expected.encode(), given):
            return Outcome("bad", user, "wrong response (password)")
        return self._count(nonce, int(nc_text, 16), now - age, user)

    def _count(self, nonce: str, nc: int, issued: float, user: str) -> Outcome:
        """Each nonce count is used once, and only upwards."""
        seen = self._counts.get(nonce)
        if seen is None and issued <= self._floor:
            return Outcome("stale", user, "nonce no longer remembered")  # never accepted twice
        if seen is not None and nc <= seen[0]:
            return Outcome("bad", user, f"nonce count {nc} replayed")
        self._counts[nonce] = (nc, issued)
        self._counts.move_to_end(nonce)
        while len(self._counts) > MAX_NONCES:
            _, (_, old) = self._counts.popitem(last=False)
            self._floor = max(self._floor, old)
        return Outcome("ok", user)
