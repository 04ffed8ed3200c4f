"""Reading infra/ (Bicep, parsed with pycep-parser) and the setting names the code reads (with ast,
so the check needs no import of the app and follows whichever configuration module exists)."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from pycep import BicepParser

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
SHARED = ROOT / "shared"
FUNCTION_APP = ROOT / "function_app.py"
# The one configuration module: shared/config.py (issue 8) once it exists, shared/settings.py before.
CONFIG_MODULES = (SHARED / "config.py", SHARED / "settings.py")

SETTING_VALUE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
DES_LITERAL = re.compile(r"^DES_[A-Z0-9_]+$")
BINDING_EXPRESSION = re.compile(r"%([A-Za-z0-9_]+)%")


@dataclass(frozen=True)
class Resource:
    file: str  # path relative to infra/
    symbol: str
    type: str
    api_version: str
    existing: bool
    config: dict[str, Any]

    def prop(self, *path: str) -> Any:
        """A nested value of the resource body, or None."""
        node: Any = self.config
        for key in path:
            if not isinstance(node, dict) or key not in node:
                return None
            node = node[key]
        return node


@cache
def parsed() -> dict[str, dict[str, Any]]:
    """Every .bicep file under infra/, parsed (relative path -> pycep JSON)."""
    parser = BicepParser()
    return {str(p.relative_to(INFRA)): parser.parse(file_path=p) for p in sorted(INFRA.rglob("*.bicep"))}


def resources(type_: str | None = None, *, include_existing: bool = False) -> list[Resource]:
    found = []
    for file, doc in parsed().items():
        for symbol, res in (doc.get("resources") or {}).items():
            r = Resource(file, symbol, res["type"], res["api_version"], bool(res.get("existing")), res["config"])
            if (type_ is None or r.type == type_) and (include_existing or not r.existing):
                found.append(r)
    return found


def one(type_: str) -> Resource:
    found = resources(type_)
    assert len(found) == 1, f"expected one {type_}, found {[f'{r.file}:{r.symbol}' for r in found]}"
    return found[0]


def variable(file: str, name: str) -> Any:
    return parsed()[file]["variables"][name]["value"]


def param_default(file: str, name: str) -> Any:
    return parsed()[file]["parameters"][name].get("default")


def param_allowed(file: str, name: str) -> list[Any]:
    for decorator in parsed()[file]["parameters"][name].get("decorators") or []:
        if decorator.get("type") == "allowed":
            return list(decorator["argument"])
    return []


def bicep_app_settings() -> dict[str, Any]:
    """The function app's settings: the one ``appSettings`` object of the function app module."""
    site = one("Microsoft.Web/sites")
    return dict(variable(site.file, "appSettings"))


# ----------------------------------------------------------------------------- the code's side
def config_module() -> Path:
    for path in CONFIG_MODULES:
        if path.exists():
            return path
    raise AssertionError(f"no configuration module among {[str(p) for p in CONFIG_MODULES]}")


def _constants(tree: ast.Module) -> Iterator[tuple[str, str]]:
    for node in tree.body:
        target: ast.expr | None = None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        elif isinstance(node, ast.AnnAssign):
            target = node.target
        value = getattr(node, "value", None)
        if isinstance(target, ast.Name) and isinstance(value, ast.Constant) and isinstance(value.value, str):
            yield target.id, value.value


@cache
def config_constants() -> dict[str, str]:
    """Module-level string constants of the configuration module (NAME -> value)."""
    return dict(_constants(ast.parse(config_module().read_text(encoding="utf-8"))))


def setting_names_in_config() -> set[str]:
    """The setting names the configuration module defines: its UPPER_CASE string constants whose
    value is a setting name (not DEFAULT_* values, schedules, queue or container names)."""
    return {
        value
        for name, value in config_constants().items()
        if name.isupper() and not name.startswith("DEFAULT_") and SETTING_VALUE.match(value)
    }


def des_literals_in_shared() -> set[str]:
    """Every ``DES_*`` string literal anywhere in shared/: a setting read outside the config module
    still shows up here."""
    found = set()
    for path in SHARED.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and DES_LITERAL.match(node.value):
                found.add(node.value)
    return found


@dataclass(frozen=True)
class Bindings:
    connections: frozenset[str]  # connection= of every trigger/binding
    expressions: frozenset[str]  # %NAME% app-setting expressions in binding arguments


def function_app_bindings() -> Bindings:
    """connection= and %NAME% of function_app.py's decorators; names resolve through the config
    module's constants (``connection=STORAGE_CONNECTION``)."""
    tree = ast.parse(FUNCTION_APP.read_text(encoding="utf-8"))
    consts = config_constants()
    connections: set[str] = set()
    expressions: set[str] = set()

    def value_of(node: ast.expr) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.Name):
            return consts.get(node.id)
        if isinstance(node, ast.Attribute):  # S.STORAGE_CONNECTION / config.STORAGE_CONNECTION
            return consts.get(node.attr)
        return None

    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        for kw in node.keywords:
            text = value_of(kw.value)
            if text is None:
                continue
            if kw.arg == "connection":
                connections.add(text)
            expressions.update(BINDING_EXPRESSION.findall(text))
    return Bindings(frozenset(connections), frozenset(expressions))
