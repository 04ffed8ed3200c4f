"""Key-encryption keys: local AES key wrap and RSA-OAEP-256, the key ring and its resolver, key specs,
and the Key Vault key up to the SDK boundary (a real CryptographyClient with a credential that fails)."""

from __future__ import annotations

import base64
import secrets
from pathlib import Path

import pytest
from azure.identity import EnvironmentCredential
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from shared.storage.crypto import (
    A256KW,
    RSA_OAEP_256,
    KeyConfigError,
    KeyNotFound,
    KeyRing,
    KeyUnavailable,
    KeyVaultKek,
    LocalAesKek,
    LocalRsaKek,
    generate_local_aes_spec,
    key_ring_from_specs,
    parse_key_spec,
)

pytestmark = pytest.mark.unit

# A content key as the storage SDK wraps it for encryption v2: "2.0" padded to 8 bytes + 32 bytes.
CEK = b"2.0\0\0\0\0\0" + secrets.token_bytes(32)


def pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def test_local_aes_wraps_and_unwraps() -> None:
    kek = LocalAesKek("dev-1", secrets.token_bytes(32))
    wrapped = kek.wrap_key(CEK)
    assert wrapped != CEK
    assert len(wrapped) == len(CEK) + 8  # RFC 3394 adds one 64-bit block
    assert kek.unwrap_key(wrapped, A256KW) == CEK
    assert (kek.get_kid(), kek.get_key_wrap_algorithm()) == ("dev-1", A256KW)
    assert "dev-1" in repr(kek)


def test_local_aes_with_other_material_fails_clearly() -> None:
    wrapped = LocalAesKek("dev-1", secrets.token_bytes(32)).wrap_key(CEK)
    impostor = LocalAesKek("dev-1", secrets.token_bytes(32))
    with pytest.raises(KeyUnavailable, match=r"key 'dev-1' could not unwrap .* not the one"):
        impostor.unwrap_key(wrapped, A256KW)
    with pytest.raises(KeyUnavailable, match="unwraps A256KW, but the blob's content key used RSA-OAEP-256"):
        impostor.unwrap_key(wrapped, RSA_OAEP_256)


def test_local_aes_key_must_be_256_bits() -> None:
    with pytest.raises(KeyConfigError, match="must be 32 bytes"):
        LocalAesKek("short", secrets.token_bytes(16))


def test_local_rsa_from_pem_wraps_with_oaep_sha256(rsa_key: rsa.RSAPrivateKey) -> None:
    kek = LocalRsaKek.from_pem("rsa-1", pem(rsa_key))
    wrapped = kek.wrap_key(CEK)
    assert len(wrapped) == 256  # one RSA-2048 block
    assert kek.unwrap_key(wrapped, RSA_OAEP_256) == CEK
    assert kek.get_key_wrap_algorithm() == RSA_OAEP_256
    other = LocalRsaKek("rsa-1", rsa.generate_private_key(public_exponent=65537, key_size=2048))
    with pytest.raises(KeyUnavailable, match="not the one"):
        other.unwrap_key(wrapped, RSA_OAEP_256)


def test_local_rsa_rejects_what_is_not_a_usable_rsa_key() -> None:
    with pytest.raises(KeyConfigError, match="not a readable PEM"):
        LocalRsaKek.from_pem("x", b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    with pytest.raises(KeyConfigError, match="not an RSA key"):
        LocalRsaKek.from_pem("x", pem(ec.generate_private_key(ec.SECP256R1())))
    with pytest.raises(KeyConfigError, match="1024 bits"):
        LocalRsaKek("x", rsa.generate_private_key(public_exponent=65537, key_size=1024))  # noqa: S505 - refused


def test_key_specs(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    spec = generate_local_aes_spec("dev-2")
    kek = parse_key_spec(spec)
    assert isinstance(kek, LocalAesKek)
    assert kek.get_kid() == "dev-2"
    # Standard base64 with padding works too.
    material = base64.b64encode(secrets.token_bytes(32)).decode()
    assert parse_key_spec(f"local-aes:std:{material}").get_kid() == "std"
    path = tmp_path / "kek.pem"
    path.write_bytes(pem(rsa_key))
    assert isinstance(parse_key_spec(f"local-rsa:rsa-9:{path}"), LocalRsaKek)
    with pytest.raises(KeyConfigError, match="cannot read"):
        parse_key_spec(f"local-rsa:rsa-9:{tmp_path / 'missing.pem'}")
    with pytest.raises(KeyConfigError, match="32 bytes"):
        parse_key_spec("local-aes:x:" + base64.b64encode(b"too short").decode())
    with pytest.raises(KeyConfigError, match="looks like local-aes"):
        parse_key_spec("local-aes:only-a-kid")
    with pytest.raises(KeyConfigError, match="Key Vault key URL"):
        parse_key_spec("plaintext-password")
    with pytest.raises(KeyConfigError, match="needs a credential"):
        parse_key_spec("https://v.vault.azure.net/keys/k/1")


def test_key_ring_resolves_current_and_older_keys_by_id() -> None:
    old = LocalAesKek("2025", secrets.token_bytes(32))
    new = LocalAesKek("2026", secrets.token_bytes(32))
    ring = KeyRing(new, [old])
    assert ring.current is new
    assert ring.resolve("2025") is old
    assert ring.resolve("2026") is new
    with pytest.raises(KeyNotFound, match=r"key '2024', which is not configured.*DES_BLOB_OLD_KEYS.*2025, 2026"):
        ring.resolve("2024")


def test_key_ring_from_specs_keeps_old_keys() -> None:
    old, new = generate_local_aes_spec("old"), generate_local_aes_spec("new")
    ring = key_ring_from_specs(new, [old, " "])
    assert ring.current.get_kid() == "new"
    assert ring.kids == ["new", "old"]


# ----------------------------------------------------------------------- Key Vault, to the SDK
@pytest.fixture
def no_azure_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH",
                 "AZURE_USERNAME", "AZURE_FEDERATED_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)


# A vault "URL" on a loopback port nothing listens on: the SDK's calls go nowhere but this machine.
LOOPBACK_KEY = "https://127.0.0.1:9/keys/des-kek/0123456789abcdef0123456789abcdef"


def test_key_vault_kek_fails_clearly_when_it_cannot_authenticate_or_reach_the_vault(no_azure_env: None) -> None:
    kek = KeyVaultKek(LOOPBACK_KEY, EnvironmentCredential(), retry_total=0)
    assert kek.get_kid() == LOOPBACK_KEY
    assert kek.get_key_wrap_algorithm() == RSA_OAEP_256
    with pytest.raises(KeyUnavailable) as wrap:
        kek.wrap_key(CEK)
    assert LOOPBACK_KEY in str(wrap.value)
    assert "wrap a content key" in str(wrap.value)
    with pytest.raises(KeyUnavailable) as unwrap:
        kek.unwrap_key(b"\x00" * 256, RSA_OAEP_256)
    assert "unwrap a content key" in str(unwrap.value)
    with pytest.raises(KeyUnavailable, match="not A256KW"):
        kek.unwrap_key(b"\x00" * 40, A256KW)


def test_key_vault_key_ids_are_checked() -> None:
    for bad in ("http://v.vault.azure.net/keys/k", "https://v.vault.azure.net/secrets/k/1", "https://v/keys"):
        with pytest.raises(KeyConfigError, match="not a Key Vault key identifier"):
            KeyVaultKek(bad, EnvironmentCredential())


def test_key_ring_opens_other_versions_of_a_configured_vault_key(no_azure_env: None) -> None:
    credential = EnvironmentCredential()
    current = KeyVaultKek(LOOPBACK_KEY, credential)
    ring = KeyRing(current, vault_credential=credential)
    older = "https://127.0.0.1:9/keys/des-kek/fedcba9876543210fedcba9876543210"
    resolved = ring.resolve(older)
    assert isinstance(resolved, KeyVaultKek)
    assert resolved.get_kid() == older
    assert ring.resolve(older) is resolved  # cached
    with pytest.raises(KeyNotFound):
        ring.resolve("https://127.0.0.1:9/keys/another-key/fedcba9876543210fedcba9876543210")
