"""Bearer tokens from plain mappings: header or query, case-insensitive, every token compared."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from streamd.protocols.credentials import one_of, supplied_token, token_ok


def test_bearer_header_wins_over_query_and_ignores_case() -> None:
    assert supplied_token({"Authorization": "Bearer abc "}, {"token": "q"}) == "abc"
    assert supplied_token({"authorization": "bearer abc"}, {}) == "abc"
    assert supplied_token({"AUTHORIZATION": "BEARER abc"}, {}) == "abc"


def test_query_token_when_no_usable_header() -> None:
    assert supplied_token({}, {"token": "q"}) == "q"
    assert supplied_token({"Authorization": "Basic dXNlcjpwdw=="}, {"token": "q"}) == "q"
    assert supplied_token({"Authorization": "Bearer   "}, {"token": "q"}) == "q"
    assert supplied_token({}, {}) is None


def test_no_tokens_configured_means_open() -> None:
    assert token_ok({}, {}, [])
    assert token_ok({"Authorization": "Bearer anything"}, {}, ())


def test_any_configured_token_is_accepted_and_nothing_else() -> None:
    tokens = ["first", "second"]
    assert token_ok({}, {"token": "second"}, tokens)
    assert token_ok({"Authorization": "Bearer first"}, {}, tokens)
    assert not token_ok({}, {"token": "third"}, tokens)
    assert not token_ok({}, {"token": ""}, tokens)
    assert not token_ok({}, {}, tokens)


def test_empty_token_never_matches_even_an_empty_configured_one() -> None:
    assert not one_of("", [""])
    assert not one_of(None, ["x"])
    assert one_of("x", ["", "x"])


@given(given_token=st.text(max_size=20), tokens=st.lists(st.text(max_size=20), max_size=4))
def test_one_of_is_membership_of_a_non_empty_token(given_token: str, tokens: list[str]) -> None:
    assert one_of(given_token, tokens) == (bool(given_token) and given_token in tokens)
