"""Key-encryption keys (KEKs) for azure-storage-blob's client-side encryption v2, and the key ring.

Every blob that holds record data is encrypted in the client (AES-256-GCM, a fresh content key
per blob); the content key is wrapped with a KEK and stored, with the KEK's id, in the blob's
``encryptiondata`` metadata. Three kinds of KEK:

- :class:`KeyVaultKek` — a Key Vault (or Managed HSM) RSA key through azure-keyvault-keys'
  ``CryptographyClient``, RSA-OAEP-256, authenticated with managed identity
  (``DefaultAzureCredential``). The key never leaves the vault; unwrapping is a vault call.
- :class:`LocalAesKek` — a 256-bit symmetric key from settings, AES key wrap (A256KW, RFC 3394).
- :class:`LocalRsaKek` — an RSA private key from a PEM file, RSA-OAEP-256.

A :class:`KeyRing` holds the current KEK (used for new blobs) and older ones; its
:meth:`KeyRing.resolve` is the SDK's ``key_resolver_function``: it finds the KEK by the id stored
with each blob, so a rotated key keeps decrypting what is still in flight. Key Vault ids of another
version of a configured vault key resolve on their own (the vault keeps old versions).

Key specs (settings ``DES_BLOB_KEY`` for the current key, ``DES_BLOB_OLD_KEYS`` comma-separated):

- ``https://<vault>.vault.azure.net/keys/<name>[/<version>]`` — Key Vault key
- ``local-aes:<kid>:<base64 of 32 bytes>`` — local symmetric key (development)
- ``local-rsa:<kid>:<path to a PEM private key>`` — local RSA key (development)
"""

from __future__ import annotations

import base64
import binascii
import logging
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

log = logging.getLogger(__name__)

A256KW = "A256KW"
RSA_OAEP_256 = "RSA-OAEP-256"
_OAEP = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


class EncryptionKeyError(Exception):
    """Base of the key-encryption-key errors."""


class KeyConfigError(EncryptionKeyError):
    """A key spec in the settings that cannot be used."""


class KeyNotFound(EncryptionKeyError):
    """A blob was encrypted with a key id that no configured key has."""


class KeyUnavailable(EncryptionKeyError):
    """The key exists in the configuration but could not wrap/unwrap (wrong key, vault unreachable, no rights)."""


class KeyEncryptionKey(Protocol):
    """What azure-storage-blob calls on a KEK."""

    def wrap_key(self, key: bytes) -> bytes: ...

    def unwrap_key(self, key: bytes, algorithm: str) -> bytes: ...

    def get_kid(self) -> str: ...

    def get_key_wrap_algorithm(self) -> str: ...


class _LocalKek:
    """The part the local KEKs share: the algorithm check, the wrong-key reason, the SDK's getters."""

    _algorithm: str

    def __init__(self, kid: str) -> None:
        self._kid = kid

    def _wrap(self, key: bytes) -> bytes:
        raise NotImplementedError

    def _unwrap(self, key: bytes) -> bytes:
        """Unwrap ``key``; ValueError (or a subclass) when the key material is not the one that wrapped it."""
        raise NotImplementedError

    def wrap_key(self, key: bytes) -> bytes:
        return self._wrap(key)

    def unwrap_key(self, key: bytes, algorithm: str) -> bytes:
        if algorithm != self._algorithm:
            raise KeyUnavailable(
                f"key {self._kid!r} unwraps {self._algorithm}, but the blob's content key used {algorithm}"
            )
        try:
            return self._unwrap(key)
        except ValueError as exc:
            raise KeyUnavailable(
                f"key {self._kid!r} could not unwrap the blob's content key: the key material is not the one "
                "the blob was encrypted with"
            ) from exc

    def get_kid(self) -> str:
        return self._kid

    def get_key_wrap_algorithm(self) -> str:
        return self._algorithm

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._kid!r})"  # never the key


class LocalAesKek(_LocalKek):
    """A256KW with a 256-bit key held in settings (development and tests)."""

    _algorithm = A256KW

    def __init__(self, kid: str, key: bytes) -> None:
        if len(key) != 32:
            raise KeyConfigError(f"local AES key {kid!r} must be 32 bytes (256 bits), got {len(key)}")
        super().__init__(kid)
        self._key = key

    def _wrap(self, key: bytes) -> bytes:
        return aes_key_wrap(self._key, key)

    def _unwrap(self, key: bytes) -> bytes:
        try:
            return aes_key_unwrap(self._key, key)
        except InvalidUnwrap as exc:
            raise ValueError(str(exc)) from exc


class LocalRsaKek(_LocalKek):
    """RSA-OAEP-256 with a local RSA private key (PEM), for development without a vault."""

    _algorithm = RSA_OAEP_256

    def __init__(self, kid: str, private_key: rsa.RSAPrivateKey) -> None:
        if private_key.key_size < 2048:
            raise KeyConfigError(f"local RSA key {kid!r} has {private_key.key_size} bits; use 2048 or more")
        super().__init__(kid)
        self._private = private_key
        self._public = private_key.public_key()

    @classmethod
    def from_pem(cls, kid: str, pem: bytes, password: bytes | None = None) -> LocalRsaKek:
        try:
            key = serialization.load_pem_private_key(pem, password=password)
        except (ValueError, TypeError) as exc:
            raise KeyConfigError(f"local RSA key {kid!r}: not a readable PEM private key ({exc})") from exc
        if not isinstance(key, rsa.RSAPrivateKey):
            raise KeyConfigError(f"local RSA key {kid!r}: the PEM holds a {type(key).__name__}, not an RSA key")
        return cls(kid, key)

    def _wrap(self, key: bytes) -> bytes:
        return self._public.encrypt(key, _OAEP)

    def _unwrap(self, key: bytes) -> bytes:
        return self._private.decrypt(key, _OAEP)


def _vault_key_base(key_id: str) -> tuple[str, str, str | None]:
    """(vault URL, key name, version or None) of a Key Vault key identifier; KeyConfigError otherwise."""
    parts = urlsplit(key_id)
    segments = [s for s in parts.path.split("/") if s]
    if parts.scheme != "https" or not parts.netloc or len(segments) not in (2, 3) or segments[0] != "keys":
        raise KeyConfigError(
            f"{key_id!r} is not a Key Vault key identifier (https://<vault>.vault.azure.net/keys/<name>[/<version>])"
        )
    return f"https://{parts.netloc}", segments[1], segments[2] if len(segments) == 3 else None


class KeyVaultKek:
    """A Key Vault RSA key as KEK: RSA-OAEP-256 through azure-keyvault-keys' ``CryptographyClient``.

    ``key_id`` may name a version or not; without one the vault's current version wraps, and the
    versioned id it reports is what travels with the blob (so a later rotation in the vault keeps
    old blobs readable: the resolver opens that exact version).
    """

    def __init__(self, key_id: str, credential: Any, **client_options: Any) -> None:
        from azure.keyvault.keys.crypto import CryptographyClient

        _vault_key_base(key_id)
        self._configured = key_id
        self._kid = key_id
        self._client = CryptographyClient(key_id, credential, **client_options)

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        from azure.core.exceptions import AzureError, ClientAuthenticationError

        try:
            return fn()
        except ClientAuthenticationError as exc:
            raise KeyUnavailable(
                f"Key Vault key {self._configured}: could not authenticate to {what} ({_first_line(exc)}); check the "
                "managed identity and its keys/wrapKey and keys/unwrapKey permissions"
            ) from exc
        except AzureError as exc:
            raise KeyUnavailable(f"Key Vault key {self._configured}: {what} failed ({_first_line(exc)})") from exc

    def wrap_key(self, key: bytes) -> bytes:
        from azure.keyvault.keys.crypto import KeyWrapAlgorithm

        result = self._call("wrap a content key", lambda: self._client.wrap_key(KeyWrapAlgorithm.rsa_oaep_256, key))
        if result.key_id:
            self._kid = result.key_id
        return bytes(result.encrypted_key)

    def unwrap_key(self, key: bytes, algorithm: str) -> bytes:
        from azure.keyvault.keys.crypto import KeyWrapAlgorithm

        if algorithm != RSA_OAEP_256:
            raise KeyUnavailable(f"Key Vault key {self._configured} unwraps {RSA_OAEP_256}, not {algorithm}")
        result = self._call(
            "unwrap a content key", lambda: self._client.unwrap_key(KeyWrapAlgorithm.rsa_oaep_256, key)
        )
        return bytes(result.key)

    def get_kid(self) -> str:
        return self._kid

    def get_key_wrap_algorithm(self) -> str:
        return RSA_OAEP_256

    def __repr__(self) -> str:
        return f"KeyVaultKek({self._configured!r})"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


class KeyRing:
    """The current KEK plus older ones, and the SDK's key resolver over them."""

    def __init__(
        self,
        current: KeyEncryptionKey,
        older: Iterable[KeyEncryptionKey] = (),
        *,
        vault_credential: Any = None,
    ) -> None:
        self.current = current
        self._by_kid: dict[str, KeyEncryptionKey] = {}
        for k in (*older, current):
            self._by_kid[k.get_kid()] = k
        self._vault_credential = vault_credential
        self._lock = threading.Lock()

    @property
    def kids(self) -> list[str]:
        return sorted(self._by_kid)

    def _vault_keys(self) -> set[tuple[str, str]]:
        out = set()
        for kid in self._by_kid:
            try:
                vault, name, _ = _vault_key_base(kid)
            except KeyConfigError:
                continue
            out.add((vault, name))
        return out

    def resolve(self, kid: str) -> KeyEncryptionKey:
        """The KEK for a blob's key id (the SDK's ``key_resolver_function``)."""
        with self._lock:
            found = self._by_kid.get(kid)
            if found is None and isinstance(self.current, KeyVaultKek) and self.current.get_kid() == kid:
                found = self.current  # the current vault key learned its versioned id on first wrap
            if found is None and self._vault_credential is not None:
                try:
                    vault, name, version = _vault_key_base(kid)
                except KeyConfigError:
                    version = None
                else:
                    if version and (vault, name) in self._vault_keys():
                        found = self._by_kid[kid] = KeyVaultKek(kid, self._vault_credential)
            if found is None:
                raise KeyNotFound(
                    f"the blob was encrypted with key {kid!r}, which is not configured: add it to DES_BLOB_OLD_KEYS "
                    f"(configured: {', '.join(self.kids)})"
                )
            return found


def parse_key_spec(spec: str, *, credential: Callable[[], Any] | None = None) -> KeyEncryptionKey:
    """A KEK from a settings spec (see the module docs); KeyConfigError with the reason otherwise."""
    spec = spec.strip()
    if spec.startswith("local-aes:"):
        _, kid, material = ([*spec.split(":", 2), "", ""])[:3]
        if not kid or not material:
            raise KeyConfigError("a local AES key spec looks like local-aes:<kid>:<base64 of 32 bytes>")
        try:
            raw = base64.b64decode(material + "=" * (-len(material) % 4), altchars=b"-_", validate=False)
        except (binascii.Error, ValueError) as exc:
            raise KeyConfigError(f"local AES key {kid!r}: the key is not base64") from exc
        return LocalAesKek(kid, raw)
    if spec.startswith("local-rsa:"):
        _, kid, path = ([*spec.split(":", 2), "", ""])[:3]
        if not kid or not path:
            raise KeyConfigError("a local RSA key spec looks like local-rsa:<kid>:<path to a PEM private key>")
        try:
            pem = Path(path).read_bytes()
        except OSError as exc:
            raise KeyConfigError(f"local RSA key {kid!r}: cannot read {path}: {exc.strerror}") from exc
        return LocalRsaKek.from_pem(kid, pem)
    if spec.startswith("https://"):
        if credential is None:
            raise KeyConfigError(f"Key Vault key {spec} needs a credential")
        return KeyVaultKek(spec, credential())
    raise KeyConfigError(
        "a blob key spec is a Key Vault key URL (https://<vault>.vault.azure.net/keys/<name>[/<version>]), "
        "local-aes:<kid>:<base64 32 bytes> or local-rsa:<kid>:<PEM path>"
    )


def default_credential() -> Any:
    """Managed identity in Azure (``AZURE_CLIENT_ID`` picks a user-assigned one), developer logins locally."""
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential(exclude_interactive_browser_credential=True)


def key_ring_from_specs(
    current: str, older: Iterable[str] = (), *, vault_credential: Callable[[], Any] | None = None
) -> KeyRing:
    """The key ring from the settings' specs; one shared credential for every Key Vault key
    (``vault_credential``: the composition root's, from :mod:`shared.identity`)."""
    shared: list[Any] = []
    make = vault_credential or default_credential

    def credential() -> Any:
        if not shared:
            shared.append(make())
        return shared[0]

    cur = parse_key_spec(current, credential=credential)
    old = [parse_key_spec(s, credential=credential) for s in older if s.strip()]
    return KeyRing(cur, old, vault_credential=shared[0] if shared else None)


def generate_local_aes_spec(kid: str) -> str:
    """A fresh ``local-aes`` spec (the demo, and ``python -m shared`` users setting up development)."""
    import secrets

    return f"local-aes:{kid}:{base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip('=')}"
