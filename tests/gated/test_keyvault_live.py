"""Key Vault key-encryption keys against a real vault (RSA key, RSA-OAEP-256), with Azurite for the blobs.

Runs when ``DES_TEST_KEYVAULT_KEY`` holds a Key Vault key identifier
(``https://<vault>.vault.azure.net/keys/<name>[/<version>]``) and ``DefaultAzureCredential`` can get
a token with keys/get, wrapKey and unwrapKey on it (``az login`` locally, managed identity in Azure).
Skipped visibly otherwise.
"""

from __future__ import annotations

import json
import os
import secrets

import pytest

from shared.storage.account import Storage
from shared.storage.blobs import DATA
from shared.storage.crypto import RSA_OAEP_256, KeyRing, KeyVaultKek, default_credential
from shared.tools.azurite import Azurite
from tests.support.azurite import clear_account

ENV = "DES_TEST_KEYVAULT_KEY"
pytestmark = [
    pytest.mark.azure,
    pytest.mark.skipif(
        not os.environ.get(ENV),
        reason=f"{ENV} is not set: give it a Key Vault RSA key id (and a login DefaultAzureCredential can use) "
        "to run the live Key Vault suite",
    ),
]


def test_wrap_and_unwrap_in_the_vault() -> None:
    kek = KeyVaultKek(os.environ[ENV], default_credential())
    cek = b"2.0\0\0\0\0\0" + secrets.token_bytes(32)
    wrapped = kek.wrap_key(cek)
    assert wrapped != cek
    assert "/keys/" in kek.get_kid()
    assert kek.get_kid().rstrip("/").count("/") == 5  # the versioned id travels with the blob
    assert kek.unwrap_key(wrapped, RSA_OAEP_256) == cek


def test_blobs_encrypted_with_the_vault_key_round_trip(azurite: Azurite) -> None:
    clear_account(azurite.connection_string)
    credential = default_credential()
    ring = KeyRing(KeyVaultKek(os.environ[ENV], credential), vault_credential=credential)
    storage = Storage.from_connection_string(azurite.connection_string, ring)
    body = json.dumps({"secret": "vault-protected value"}).encode()
    stored = storage.payloads.put(body)
    data, meta = storage.stores.raw(DATA, stored.blob)
    assert b"vault-protected" not in data
    kid = json.loads(meta["encryptiondata"])["WrappedContentKey"]["KeyId"]
    assert kid.startswith(os.environ[ENV].rstrip("/").rsplit("/", 1)[0]) or kid.startswith(os.environ[ENV])
    # A fresh process: the resolver opens exactly the key version named in the blob.
    reader = Storage.from_connection_string(
        azurite.connection_string, KeyRing(KeyVaultKek(os.environ[ENV], credential), vault_credential=credential)
    )
    assert reader.payloads.get(stored.blob) == body
