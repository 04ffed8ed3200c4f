"""Reading a destination's tables back, for tests and tooling (the demo's convergence check).

Not part of the engine's port: the sync path never reads rows back. Every dialect happens to
implement :class:`TableReader`; :func:`table_rows` says clearly when a destination does not.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable


@runtime_checkable
class TableReader(Protocol):
    def table_rows(self, table: str) -> Iterator[dict[str, object]]:
        """Every row of a table, as column name -> value."""


def table_rows(destination: object, table: str) -> Iterator[dict[str, object]]:
    """Every row of ``table`` in ``destination`` (a dialect implementing :class:`TableReader`)."""
    if not isinstance(destination, TableReader):
        raise TypeError(f"{type(destination).__name__} cannot read tables back")
    return destination.table_rows(table)
