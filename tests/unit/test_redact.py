"""Redaction: registered secrets and secret-shaped text are masked wherever they appear, in linear time."""

from __future__ import annotations

import itertools
import re
from dataclasses import replace
from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kfm_ops import redact as redaction
from kfm_ops.redact import MASK, clip, redact, redact_obj, register_secret

CANARY = "canary-Secret-7f3a9c"


@pytest.mark.parametrize("text", [
    f"postgresql://kfm_owner:{CANARY}@127.0.0.1:5432/kfm",
    f"postgresql://kfm_owner:p@ss{CANARY}@word@db.internal:5432/kfm",  # '@' in the password
    f"redis://:{CANARY}@127.0.0.1:6379/0",
    f"Authorization: Bearer {CANARY}",
    f"Authorization: Basic {CANARY}",
    f"{{'Authorization': 'Basic {CANARY} x'}}",
    f"password={CANARY} host=x",
    f"host=db password='a b {CANARY} c' user=kfm",  # libpq quoted value with spaces
    f"host=db password='it\\'s {CANARY}' user=kfm",  # with an escaped quote
    f'{{"password": "a b {CANARY}"}}',
    f"host=db sslpassword={CANARY}",
    f"client_secret={CANARY}&grant_type=x",
    f"KFM_POSTGIS__WRITE_PASS={CANARY}",
    f"KFM_LLM__API_KEY: {CANARY}",
    f'{{"api_key": "{CANARY}"}}',
    f"token: {CANARY}",
    f"password=password='a b {CANARY}'",  # a key chained into another key's value
    f"Bearer Bearer {CANARY}",
])
def test_secret_shaped_text_is_masked(text: str) -> None:
    assert CANARY not in redact(text)


def test_a_url_password_is_masked_up_to_the_last_at_before_the_host() -> None:
    assert redact("postgresql://u:p@ss@word@h:5432/kfm") == f"postgresql://u:{MASK}@h:5432/kfm"
    assert redact("see http://h:9200/_cluster/health and a@b") == "see http://h:9200/_cluster/health and a@b"


@pytest.mark.parametrize("text", [
    "FATAL: password authentication failed for user \"kfm_reader\"",
    "accounts_changed=1 password_changed=True",
    "3 passed, 1 failed; summary passed=3",
    "GET http://127.0.0.1:9200/_cluster/health?wait_for_status=yellow",
    "postgresql://kfm_reader@127.0.0.1:5432/kfm",
    "the bearer of bad news",
])
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact(text) == text


def test_registered_secrets_are_masked_anywhere() -> None:
    register_secret("s3cr3t-registered-value")
    assert redact("the value s3cr3t-registered-value leaked") == f"the value {MASK} leaked"
    assert redact_obj({"k": ["s3cr3t-registered-value", 1]}) == {"k": [MASK, 1]}


def test_short_values_are_not_registered() -> None:
    register_secret("abc")
    assert redact("abc is a word") == "abc is a word"


def test_clip_redacts_before_it_cuts() -> None:
    secret = "clip-canary-0123456789abcdef"
    register_secret(secret)
    text = "x" * 190 + secret
    clipped = clip(text, 200)
    assert secret[:10] not in clipped
    assert len(clipped) <= 201  # the limit and an ellipsis


# --- linear time, checked by shape --------------------------------------------------------------
#
# A backtracking regex scanned over a text is linear when every attempt either fails within a
# bounded number of characters or succeeds and is consumed: no repeat inside a repeat, every repeat
# bounded, except one greedy repeat of a single character (class) with nothing after it that can
# fail (so once entered, the attempt succeeds). The bound below caps the work of a failing attempt.
ATTEMPT_BUDGET = 10_000


def _shape_problems(pattern: re.Pattern[str]) -> list[str]:
    problems: list[str] = []
    budget = [1]

    def cannot_fail(items: list[Any]) -> bool:
        return all(op in (sre.MAX_REPEAT, sre.MIN_REPEAT) and av[0] == 0 for op, av in items)

    def walk(items: list[Any], tail: bool, in_repeat: bool) -> None:
        for i, (op, av) in enumerate(items):
            at_tail = tail and cannot_fail(items[i + 1:])
            if op in (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT):
                _low, high, body = av
                if in_repeat:
                    problems.append(f"a repeat inside a repeat: {body}")
                if high == sre.MAXREPEAT:
                    if not (at_tail and op is sre.MAX_REPEAT and body.getwidth()[1] <= 2):
                        problems.append(f"an unbounded repeat that is not the greedy end of the pattern: {body}")
                else:
                    budget[0] *= high + 1
                walk(list(body), at_tail and high == sre.MAXREPEAT, True)
            elif op is sre.SUBPATTERN:
                walk(list(av[-1]), at_tail, in_repeat)
            elif op is sre.BRANCH:
                for branch in av[1]:
                    walk(list(branch), at_tail, in_repeat)
            elif op in (sre.ASSERT, sre.ASSERT_NOT):
                if av[1].getwidth()[1] > 16:
                    problems.append("a look-around wider than 16 characters")
                walk(list(av[1]), False, in_repeat)
            elif op in (sre.GROUPREF, sre.GROUPREF_EXISTS, sre.ATOMIC_GROUP):
                problems.append(f"{op} is not allowed")

    walk(list(sre_parse.parse(pattern.pattern, pattern.flags)), True, False)
    if budget[0] > ATTEMPT_BUDGET:
        problems.append(f"a failing attempt may try {budget[0]} combinations (> {ATTEMPT_BUDGET})")
    return problems


def test_the_shape_check_rejects_what_backtracks() -> None:
    """The check itself: the old URL pattern (quadratic on a long word) and classic blow-ups fail it."""
    for bad in (r"[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:[^@\s]+@", r"(a+)+b", r"(?:x|y)*z", r"a{0,999}b{0,999}c"):
        assert _shape_problems(re.compile(bad)), bad


@pytest.mark.parametrize("pattern", redaction.PATTERNS, ids=lambda p: p.pattern[:40])
def test_every_redaction_pattern_has_a_linear_shape(pattern: re.Pattern[str]) -> None:
    assert _shape_problems(pattern) == []


class _Recorder:
    """A pattern that records where it was asked to search or match, and how far its matches reached."""

    def __init__(self, pattern: re.Pattern[str], calls: list[tuple[str, int, int]]) -> None:
        self.pattern = pattern
        self.calls = calls

    def search(self, text: str, pos: int) -> re.Match[str] | None:
        found = self.pattern.search(text, pos)
        self.calls.append(("search", pos, found.end() if found else len(text)))
        return found

    def match(self, text: str, pos: int) -> re.Match[str] | None:
        found = self.pattern.match(text, pos)
        self.calls.append(("match", pos, found.end() if found else pos))
        return found


@pytest.mark.parametrize("text", [
    "password=" * 2000,
    "password='" * 2000 + "x",
    "authorization: " * 2000,
    "Bearer " * 2000 + "abcdefgh",
    "token=abc password='a\\'b\\'c' " * 500,
])
def test_the_value_scanner_reads_forward_only(text: str) -> None:
    """Every scan starts where the previous one may start, and value runs never read a character twice."""
    for kind in redaction.KINDS:
        calls: list[tuple[str, int, int]] = []
        recorded = replace(kind, trigger=_Recorder(kind.trigger, calls), run=_Recorder(kind.run, calls),
                           quoted={q: _Recorder(inner, calls) for q, inner in kind.quoted.items()})
        spans = list(redaction.values(text, recorded))
        searches = [pos for what, pos, _ in calls if what == "search"]
        assert searches == sorted(searches)
        runs = sorted((pos, end) for what, pos, end in calls if what == "match")
        assert all(a_end <= b_pos for (_, a_end), (b_pos, _) in itertools.pairwise(runs))
        assert sum(end - pos for pos, end in runs) <= len(text)
        assert spans == sorted(spans)


# --- the canary never survives --------------------------------------------------------------------

FRAGMENTS = ["a", "Z", "0", "é", " ", "\t", "\n", ":", "=", "/", "//", "://", "@", "?", "#", "&", ",", ";", "{",
             "}", "-", "_", ".", "+", "%", "\\", "'", '"', "password", "token", "pass", "secret", "authorization",
             "Bearer ", "Basic ", "http", "postgresql"]
QUOTELESS = [f for f in FRAGMENTS if not set(f) & set("'\"\\")]

SHAPES = [
    "postgresql://kfm_owner:{c}@db.internal:5432/kfm",
    "redis://default:p@ss{c}@word@10.0.0.3:6379/0",
    "password={c}",
    "password='a b {c}'",
    'api_key: "{c} x"',
    "sslpassword={c}",
    "client_secret={c}",
    "Authorization: Basic {c}",
    "Authorization: Bearer {c}",
    "Bearer {c}",
]
SIZES = [0, 1, 100, 10_000, 100_000, 1_000_000]


def _filler(draw: Any, fragments: list[str]) -> str:
    chunk = "".join(draw(st.lists(st.sampled_from(fragments), min_size=1, max_size=40)))
    size = draw(st.sampled_from(SIZES))
    return (chunk * (size // len(chunk) + 1))[:size]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_a_registered_canary_never_survives(data: st.DataObject) -> None:
    canary = "reg-canary-" + data.draw(st.text("abcdef0123456789:@/'\" ", min_size=8, max_size=24))
    register_secret(canary)
    text = _filler(data.draw, FRAGMENTS)
    at = data.draw(st.integers(0, len(text)))
    assert canary not in redact(text[:at] + canary + text[at:])


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_a_secret_shaped_canary_never_survives(data: st.DataObject) -> None:
    """At any position of a text up to 1 MB: on a line of its own, or glued into quote-free text.

    (Glued right after an unclosed quote, a value is ambiguous — ``password='x password='y z'`` —
    so the glued case draws its text without quote characters.)
    """
    canary = "Cnry" + data.draw(st.text("abcdefXYZ0123456789-_.~", min_size=8, max_size=20))
    glued = data.draw(st.booleans())
    text = _filler(data.draw, QUOTELESS if glued else FRAGMENTS)
    at = data.draw(st.integers(0, len(text)))
    shaped = data.draw(st.sampled_from(SHAPES)).format(c=canary)
    before = "" if glued else "\n"
    assert canary not in redact(text[:at] + before + shaped + text[at:])
