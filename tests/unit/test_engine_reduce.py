"""The reduction buffer (``reduce_batch``) against a plain reference: the newest notification per
record wins (a delete wins a version tie, and of equal ones the first to arrive), the others are
stale; winners come in the order their record first arrived, with their record ids in lower case.
The engine's version also returns the winners' lower-case ids, which the later steps use instead
of lowering them again: this differential test holds both to the plain rule."""

from __future__ import annotations

import uuid
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from shared.contract.models import ChangeType, Notification
from shared.contract.parse import parse_bodies
from shared.engine.engine import reduce_batch
from shared.engine.outcomes import BatchResult
from tests.support.model import Change, envelope

_RANK = {ChangeType.CREATE: 0, ChangeType.UPDATE: 0, ChangeType.DELETE: 1}


def reference(notifications: list[Notification]) -> tuple[list[Notification], Counter[str]]:
    best: dict[tuple[str, str], Notification] = {}
    stale: Counter[str] = Counter()
    for n in notifications:
        key = (n.entity, n.recordId.lower())
        cur = best.get(key)
        if cur is None:
            best[key] = n
            continue
        if (n.version, _RANK[n.changeType]) > (cur.version, _RANK[cur.changeType]):
            best[key] = n
            stale[cur.entity] += 1
        else:
            stale[n.entity] += 1
    return list(best.values()), stale


def rid(i: int, upper: bool) -> str:
    text = str(uuid.UUID(int=i + 1, version=4))
    return text.upper() if upper else text


changes = st.lists(
    st.builds(
        lambda entity, i, upper, kind, version, name: Change(
            entity,
            rid(i, upper),
            kind,
            version,
            None if kind == "delete" else {"name": name},
            changed_on=f"2026-11-21T10:00:0{version}Z",
        ),
        st.sampled_from(["account", "contact", "lead"]),
        st.integers(0, 5),
        st.booleans(),
        st.sampled_from(["create", "update", "delete"]),
        st.integers(0, 3),
        st.sampled_from(["a", "b"]),  # equal versions with different content: the first one wins
    ),
    min_size=1,
    max_size=40,
)


@given(changes)
def test_reduce_batch_keeps_what_the_plain_loop_keeps(batch: list[Change]) -> None:
    notifications = parse_bodies([envelope(batch)]).notifications
    assert len(notifications) == len(batch)
    expected, stale = reference(notifications)
    result = BatchResult()
    winners, ids = reduce_batch(notifications, result)
    assert [id(n) for n in winners] == [id(n) for n in expected]  # the same objects, in the same order
    assert ids == [n.recordId.lower() for n in winners]
    assert result.stale == sum(stale.values())
    assert {e: c.stale for e, c in result.per_entity.items() if c.stale} == dict(stale)


def test_no_record_twice_keeps_every_notification_in_order() -> None:
    batch = [Change("account", rid(i, i % 2 == 0), "update", 1, {"name": "x"}) for i in range(6)]
    notifications = parse_bodies([envelope(batch)]).notifications
    result = BatchResult()
    winners, ids = reduce_batch(notifications, result)
    assert winners == notifications
    assert ids == [rid(i, False) for i in range(6)]
    assert result.stale == 0
