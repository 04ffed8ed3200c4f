"""Client-side encryption v2 on a real Azurite: nothing readable at rest, key ids travel with the blobs,
rotation keeps old blobs readable, and a missing or wrong key is a clear error that leaves the blob alone."""

from __future__ import annotations

import json
import secrets

import pytest
from azure.storage.blob import BlobServiceClient
from cryptography.hazmat.primitives.asymmetric import rsa

from shared.contract.parse import Unprocessable
from shared.engine.outcomes import RecordFailure
from shared.storage.account import Storage
from shared.storage.blobs import DATA, FAILED, RETRY, UNPROCESSABLE, BlobDecryptionError, BlobMissing, iso
from shared.storage.crypto import KeyRing, LocalAesKek, LocalRsaKek
from shared.tools.azurite import Azurite
from tests.support.metrics import note

pytestmark = pytest.mark.integration

SECRETS = ("Contoso Geheimnis AG", "4111-1111-1111-1111", "jane.doe@example.com")


def payload() -> bytes:
    n = note(1, 5, "create", name=SECRETS[0], card=SECRETS[1], email=SECRETS[2], revenue=123456.75)
    return json.dumps(n).encode()


def raw_bytes(azurite: Azurite, container: str, name: str) -> tuple[bytes, dict[str, str]]:
    """What Azurite stores, read with a client that has no key at all."""
    plain = BlobServiceClient.from_connection_string(azurite.connection_string)
    d = plain.get_blob_client(container, name).download_blob()
    return bytes(d.readall()), dict(d.properties.metadata or {})


def assert_no_plaintext(data: bytes) -> None:
    for value in SECRETS:
        assert value.encode() not in data
        assert value.encode("utf-16-le") not in data
    assert b"account" not in data
    assert b"recordId" not in data


def test_every_record_blob_is_ciphertext_at_rest(storage: Storage, azurite: Azurite) -> None:
    stored = storage.payloads.put(payload())
    data, meta = raw_bytes(azurite, DATA, stored.blob)
    assert_no_plaintext(data)
    info = json.loads(meta["encryptiondata"])
    assert info["EncryptionAgent"] == {"Protocol": "2.0", "EncryptionAlgorithm": "AES_GCM_256"}
    assert info["WrappedContentKey"]["KeyId"] == storage.stores.keys.current.get_kid()
    assert info["WrappedContentKey"]["Algorithm"] == "A256KW"
    assert len(data) == len(payload()) + 12 + 16  # nonce + GCM tag around one region
    assert storage.payloads.get(stored.blob, size=stored.size, sha256=stored.sha256) == payload()

    # The other record-holding stores too: retry, unprocessable, parked failures.
    from shared.contract.models import Notification

    n = Notification.model_validate(json.loads(payload()))
    name, created = storage.retries.park(
        "p1", [json.loads(payload())], reason="down", now=storage.clock(), not_before=storage.clock()
    )
    assert created
    parked = storage.parked.put("p1", [RecordFailure(n, "rejected")])
    kept = storage.unprocessable.put("p1", [Unprocessable(payload().decode(), "bad", "account", n.recordId)])
    assert parked is not None
    assert kept is not None
    for container, blob in ((RETRY, name), (FAILED, parked), (UNPROCESSABLE, kept)):
        data, meta = raw_bytes(azurite, container, blob)
        assert_no_plaintext(data)
        assert "encryptiondata" in meta
    assert [e["notification"]["attributes"]["name"] for e in storage.parked.entries("p1")] == [SECRETS[0]]
    assert [e["reason"] for e in storage.unprocessable.entries("p1")] == ["bad"]


def test_rotation_keeps_in_flight_blobs_readable(azurite: Azurite, storage: Storage) -> None:
    old_key = storage.stores.keys.current
    stored = storage.payloads.put(payload())
    new_key = LocalAesKek("2026-rotated", secrets.token_bytes(32))
    rotated = Storage.from_connection_string(azurite.connection_string, KeyRing(new_key, [old_key]))
    assert rotated.payloads.get(stored.blob) == payload()  # written with the old key, found by its id
    fresh = rotated.payloads.put(payload())
    _, meta = raw_bytes(azurite, DATA, fresh.blob)
    assert json.loads(meta["encryptiondata"])["WrappedContentKey"]["KeyId"] == "2026-rotated"
    with pytest.raises(BlobDecryptionError):
        storage.payloads.get(fresh.blob)  # the old ring does not know the new key


def test_a_missing_key_is_a_clear_error_and_the_blob_stays(azurite: Azurite, storage: Storage) -> None:
    stored = storage.payloads.put(payload())
    before = raw_bytes(azurite, DATA, stored.blob)
    stranger = Storage.from_connection_string(
        azurite.connection_string, KeyRing(LocalAesKek("other", secrets.token_bytes(32)))
    )
    with pytest.raises(BlobDecryptionError) as err:
        stranger.payloads.get(stored.blob)
    text = str(err.value)
    kid = storage.stores.keys.current.get_kid()
    assert f"data/{stored.blob}" in text
    assert f"key {kid!r}, which is not configured" in text
    assert "left as it is" in text
    assert raw_bytes(azurite, DATA, stored.blob) == before


def test_a_wrong_key_under_the_right_id_is_a_clear_error(azurite: Azurite, storage: Storage) -> None:
    stored = storage.payloads.put(payload())
    kid = storage.stores.keys.current.get_kid()
    impostor = Storage.from_connection_string(
        azurite.connection_string, KeyRing(LocalAesKek(kid, secrets.token_bytes(32)))
    )
    with pytest.raises(BlobDecryptionError, match="could not unwrap the blob's content key"):
        impostor.payloads.get(stored.blob)
    assert storage.payloads.get(stored.blob) == payload()


def test_rsa_oaep_256_keys_work_end_to_end(azurite: Azurite, storage: Storage) -> None:
    kek = LocalRsaKek("rsa-dev", rsa.generate_private_key(public_exponent=65537, key_size=2048))
    rsa_storage = Storage.from_connection_string(azurite.connection_string, KeyRing(kek))
    stored = rsa_storage.payloads.put(payload())
    data, meta = raw_bytes(azurite, DATA, stored.blob)
    assert_no_plaintext(data)
    assert json.loads(meta["encryptiondata"])["WrappedContentKey"]["Algorithm"] == "RSA-OAEP-256"
    assert rsa_storage.payloads.get(stored.blob) == payload()


def test_an_unencrypted_blob_is_refused(azurite: Azurite, storage: Storage) -> None:
    storage.stores.ensure_containers([DATA])
    plain = BlobServiceClient.from_connection_string(azurite.connection_string)
    plain.get_blob_client(DATA, "2026/01/01/planted.json").upload_blob(payload())
    with pytest.raises(BlobDecryptionError, match=r"cannot decrypt blob data/2026/01/01/planted\.json"):
        storage.payloads.get("2026/01/01/planted.json")
    with pytest.raises(BlobMissing):
        storage.payloads.get("2026/01/01/never-written.json")


def test_retry_metadata_updates_keep_the_encryption_metadata(storage: Storage) -> None:
    docs = [json.loads(payload())]
    now = storage.clock()
    name, _ = storage.retries.park("p2", docs, reason="connection refused", now=now, not_before=now)
    state = storage.retries.state(name)
    assert (state.profile_id, state.attempt, state.count) == ("p2", 0, 1)
    lease = storage.retries.lease(name)
    assert lease is not None
    assert storage.retries.lease(name) is None  # one worker at a time
    storage.retries.update(state, {"desattempt": "3", "desnotbefore": iso(now), "deslasterror": "naïve\nerror"},
                           lease=lease)
    assert storage.retries.read(name, lease=lease).notifications == docs
    after = storage.retries.state(name)
    assert after.attempt == 3
    assert after.last_error == "na?ve error"  # headers are ASCII
    assert storage.retries.pending() == 1
    lease.release()
