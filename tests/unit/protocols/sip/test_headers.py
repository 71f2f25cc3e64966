"""The one quote-aware splitter behind list headers and parameters."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamd.protocols.sip.headers import SipHeaderError, parse_params, split_list

# items that hold the separators only where the splitter must not split: in quotes or <...>
_PLAIN = st.text("abcxyz019.-_", min_size=1, max_size=6)
_QUOTED = st.builds(lambda a, b: f'"{a},{b};\\"q"', _PLAIN, _PLAIN)
_ANGLED = st.builds(lambda a, b: f"<sip:{a};p={b},x>", _PLAIN, _PLAIN)


@settings(max_examples=200)
@given(st.lists(st.one_of(_PLAIN, _QUOTED, _ANGLED), min_size=1, max_size=6))
def test_split_list_gives_back_what_was_joined(items: list[str]) -> None:
    assert split_list(" , ".join(items)) == items


def test_params_split_outside_quotes_and_reject_an_open_quote() -> None:
    assert parse_params(';a=1;b;c="x;y\\"z"') == {"a": "1", "b": None, "c": 'x;y"z'}
    with pytest.raises(SipHeaderError, match="unterminated quoted string"):
        parse_params(';a="x;b=2')
    assert split_list('"open, <sip:a>') == ['"open, <sip:a>']  # a list header keeps it whole
