"""Replay's batches are bounded in lines and in bytes, and a line too long to read is unprocessable
without being read whole (issue 12: memory)."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.replay import KEPT_OF_A_LONG_LINE, batches

pytestmark = pytest.mark.unit


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(st.binary(min_size=0, max_size=60).map(lambda b: b.replace(b"\n", b"x")), max_size=40),
    size=st.integers(1, 8),
    max_bytes=st.integers(1, 200),
)
def test_batches_keep_every_line_in_order_within_both_bounds(lines: list[bytes], size: int, max_bytes: int) -> None:
    data = b"\n".join(lines) + b"\n"
    out = list(batches(io.BytesIO(data), size, max_bytes, max_line=10_000))
    kept = [line.strip() for line in lines if line.strip()]
    assert [line for b in out for line in b.lines] == kept
    for b in out:
        assert 1 <= b.count <= size
        assert b.size == sum(map(len, b.lines))
        assert b.size <= max_bytes or len(b.lines) == 1  # a line longer than the bound is a batch alone
        assert not b.too_long


def test_a_line_longer_than_the_limit_is_unprocessable_and_skipped() -> None:
    long = b'{"x": "' + b"a" * 50_000 + b'"}'
    data = b"first\n" + long + b"\nsecond\n" + long + b"\xff" * 10  # the last line has no newline
    out = list(batches(io.BytesIO(data), 100, 10**6, max_line=10_000))
    assert [line for b in out for line in b.lines] == [b"first", b"second"]
    too_long = [u for b in out for u in b.too_long]
    assert len(too_long) == 2
    assert sum(b.count for b in out) == 4
    for u in too_long:
        assert "longer than the 10000 bytes" in u.reason
        assert len(u.body) <= KEPT_OF_A_LONG_LINE * 4  # the head only (escaped bytes may take 4 characters)
        assert u.body.startswith('{"x": "aaa')
        u.body.encode("utf-8")


def test_a_line_exactly_at_the_limit_is_read() -> None:
    line = b"b" * 99
    out = list(batches(io.BytesIO(line + b"\n" + line), 10, 10**6, max_line=100))
    assert [b.lines for b in out] == [[line, line]]
