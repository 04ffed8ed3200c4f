"""A real Azurite for the tests: one per test process (pytest-xdist worker), started from node_modules.

The starter itself is shared with the demo (shared/tools/azurite.py). No test double: without
Node.js and ``npm ci`` the tests that need Azurite fail with the reason.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator

import pytest

from shared.storage.account import Storage
from shared.storage.crypto import KeyRing, LocalAesKek
from shared.tools.azurite import Azurite, running_azurite


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """A running Azurite (blob and queue), for the whole test session of this process."""
    with running_azurite() as az:
        yield az


@pytest.fixture(scope="session")
def azurite_connection(azurite: Azurite) -> str:
    return azurite.connection_string


def clear_account(connection: str) -> None:
    """Delete every container of the Azurite account (a clean slate for one test)."""
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(connection)
    for c in service.list_containers():
        service.delete_container(c.name)


@pytest.fixture
def blob_keys() -> KeyRing:
    """A fresh local AES-256 key-encryption key (A256KW) in a key ring."""
    return KeyRing(LocalAesKek(f"test-{uuid.uuid4().hex[:8]}", secrets.token_bytes(32)))


@pytest.fixture
def storage(azurite: Azurite, blob_keys: KeyRing) -> Storage:
    """The blob stores on the session's Azurite, emptied for this test."""
    clear_account(azurite.connection_string)
    return Storage.from_connection_string(azurite.connection_string, blob_keys)
