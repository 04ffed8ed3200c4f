"""Reading a destination's tables back, for tests and tooling (the demo's convergence check).

Not part of the engine's port: the sync path never reads rows back. Every dialect happens to
implement :class:`TableReader`; :func:`table_rows` says clearly when a destination does not.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class TableReader(Protocol):
    def table_rows(self, table: str) -> Iterator[dict[str, object]]:
        """Every row of a table, as column name -> value."""


def table_rows(destination: object, table: str) -> Iterator[dict[str, object]]:
    """Every row of ``table`` in ``destination`` (a dialect implementing :class:`TableReader`)."""
    if not isinstance(destination, TableReader):
        raise TypeError(f"{type(destination).__name__} cannot read tables back")
    return destination.table_rows(table)


@runtime_checkable
class VersionReader(Protocol):
    """Chunked reads of an entity table's (id, version), for the Dataverse source's reconcile: its ids
    in bounded chunks, in the database's key order. (Keyed reads are the port's ``held_versions``.)"""

    def id_versions_after(self, table: str, after: str | None, limit: int) -> list[tuple[str, int]]:
        """At most ``limit`` rows (lower-case id, version) after the id ``after`` (None: from the first),
        in the database's key order."""


def _exists(destination: Any, table: str) -> bool:
    with destination.transaction() as tx:
        return tx.columns(table) is not None


def record_versions(destination: Any, entity: str, ids: Sequence[str]) -> dict[str, int]:
    """The contract version ``destination`` holds for each of ``ids`` of ``entity`` (its rows)."""
    if not ids:
        return {}
    versions: dict[str, int] = destination.held_versions(destination.layout.entity_table(entity), ids)
    return versions


def id_versions_after(destination: Any, entity: str, after: str | None, limit: int) -> list[tuple[str, int]]:
    """A chunk of ``entity``'s (id, version) in ``destination``, after ``after`` in key order."""
    table = destination.layout.entity_table(entity)
    if after is None and not _exists(destination, table):
        return []
    if not isinstance(destination, VersionReader):
        raise TypeError(f"{type(destination).__name__} cannot read record versions back in chunks")
    return destination.id_versions_after(table, after, limit)
