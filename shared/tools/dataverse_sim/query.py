"""A small ``$filter`` evaluator: comparisons (eq, ne, gt, ge, lt, le) joined by ``and``/``or``
(``and`` binds tighter; no parentheses, no functions). Enough for re-reading records by id, for
plain (untracked) queries and for ``EntityDefinitions?$filter=ChangeTrackingEnabled eq true``.
Anything else is refused with a clear message naming the simulator's limit."""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from shared.tools.dataverse_sim.values import SimError

Getter = Callable[[str], Any]

_TOKEN = re.compile(
    r"\s*(?:(?P<guid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})"
    r"|(?P<str>'(?:[^']|'')*')|(?P<enum>[A-Za-z.]+'[^']*')|(?P<word>[A-Za-z_$][A-Za-z0-9_./]*)"
    r"|(?P<num>-?\d+(?:\.\d+)?))"
)
_OPS = {"eq", "ne", "gt", "ge", "lt", "le"}
_SENTINEL = object()


def _unsupported(expr: str) -> SimError:
    return SimError(400, "0x0", f"The Dataverse simulator's $filter supports only comparisons (eq, ne, gt, ge, lt, le) "
                                f"joined by 'and'/'or'; cannot evaluate {expr!r}.")


def _literal(kind: str, text: str) -> Any:
    if kind == "str":
        return text[1:-1].replace("''", "'")
    if kind == "enum":
        return text[text.index("'") + 1:-1]
    if kind == "num":
        return Decimal(text)
    if kind == "guid":
        return text.lower()
    if text == "null":
        return None
    if text == "true":
        return True
    if text == "false":
        return False
    return _SENTINEL


def parse_filter(expr: str) -> list[list[tuple[str, str, Any]]]:
    """Disjunctive normal form: a list (or) of lists (and) of (property, op, literal)."""
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = expr.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise _unsupported(expr)
        kind = m.lastgroup or ""
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    groups: list[list[tuple[str, str, Any]]] = [[]]
    i = 0
    while i < len(tokens):
        if i + 2 >= len(tokens):
            raise _unsupported(expr)
        prop_kind, prop = tokens[i]
        op_kind, op = tokens[i + 1]
        lit_kind, lit = tokens[i + 2]
        if prop_kind != "word" or op_kind != "word" or op not in _OPS:
            raise _unsupported(expr)
        value = _literal(lit_kind, lit)
        if value is _SENTINEL:
            raise _unsupported(expr)
        groups[-1].append((prop, op, value))
        i += 3
        if i < len(tokens):
            kind, joiner = tokens[i]
            if kind != "word" or joiner not in {"and", "or"}:
                raise _unsupported(expr)
            if joiner == "or":
                groups.append([])
            i += 1
            if i >= len(tokens):
                raise _unsupported(expr)
    return groups


def _compare(left: Any, op: str, right: Any) -> bool:
    if isinstance(left, str) and isinstance(right, str):
        left, right = left.lower(), right.lower()
    if isinstance(left, (int, float)) and not isinstance(left, bool) and isinstance(right, Decimal):
        left = Decimal(str(left))
    if op == "eq":
        return bool(left == right)
    if op == "ne":
        return bool(left != right)
    if left is None or right is None:
        return False
    try:
        if op == "gt":
            return bool(left > right)
        if op == "ge":
            return bool(left >= right)
        if op == "lt":
            return bool(left < right)
        return bool(left <= right)
    except TypeError:
        return False


def matches(groups: list[list[tuple[str, str, Any]]], get: Getter) -> bool:
    return any(all(_compare(get(prop), op, value) for prop, op, value in group) for group in groups)
