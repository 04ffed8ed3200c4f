"""README's layout and architecture sections and docs/architecture.md name only paths that exist
(issue 8: the docs match the code)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# A path-like token: a file with an extension we ship, or a folder (ends with "/").
TOKEN = re.compile(r"(?<![\w<>./-])([\w.-]+(?:/[\w.-]+)*(?:/|\.(?:py|md|txt|json|toml|yml|sh)))(?![\w/])")
# Folders a diagram names relative to shared/ (the package) rather than to the repository.
BASES = ["", "shared/", "shared/tools/", "tests/", "shared/destinations/", "shared/api/", "shared/engine/",
         "docs/", "scripts/", "benchmarks/"]  # fmt: skip
# Blob containers the data path names (not folders of the repository).
CONTAINERS = {"data/", "retry/", "unprocessablemessages/", "failurelog/", "failednotifications/", "unrouted/"}


def code_blocks(text: str) -> list[str]:
    return re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)


def named_paths(doc: Path, sections: list[str] | None = None) -> set[str]:
    text = doc.read_text(encoding="utf-8")
    if sections is not None:
        parts = re.split(r"^## ", text, flags=re.M)
        text = "\n".join(p for p in parts if any(p.startswith(s) for s in sections))
    found: set[str] = set()
    for block in code_blocks(text):
        found.update(m.group(1) for m in TOKEN.finditer(block))
    found.update(re.findall(r"`((?:shared|tests|docs)/[\w./-]+)`", text))
    return found - CONTAINERS


def missing(paths: set[str]) -> list[str]:
    return sorted(p for p in paths if not any((REPO / base / p).exists() for base in BASES))


@pytest.mark.parametrize(
    ("doc", "sections"),
    [("docs/architecture.md", None), ("README.md", ["Architecture", "Project layout"])],
)
def test_every_path_the_docs_name_exists(doc: str, sections: list[str] | None) -> None:
    paths = named_paths(REPO / doc, sections)
    assert len(paths) > 20  # the diagrams were read
    assert missing(paths) == []
