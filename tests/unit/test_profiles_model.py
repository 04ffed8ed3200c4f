"""Profile fields: validation with clear reasons, and a destination secret that never shows."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from shared.profiles.checks import scrub, secrets_of
from shared.profiles.model import (
    KeyVaultSecretRef,
    Profile,
    ProfileCreate,
    ProfileOut,
    ProfileState,
    ProfileUpdate,
    describe_literal,
)
from shared.store.base import StoredProfile

pytestmark = pytest.mark.unit

ORG = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
KV = "https://contoso-des.vault.azure.net/secrets/reporting-db"


def body(**overrides: Any) -> dict[str, Any]:
    b: dict[str, Any] = {"name": "Sales", "organizationId": ORG, "destination": KV, "entities": ["account"]}
    b.update(overrides)
    return b


def errors(**overrides: Any) -> dict[str, str]:
    with pytest.raises(ValidationError) as info:
        ProfileCreate.model_validate(body(**overrides))
    return {".".join(str(p) for p in e["loc"]): e["msg"] for e in info.value.errors()}


def test_defaults_follow_des() -> None:
    p = ProfileCreate.model_validate(body())
    assert (p.retryCount, p.retryIntervalSeconds, p.prefix, p.schema_, p.writeDeleteLog) == (12, 5, "", None, False)
    assert p.state is ProfileState.DRAFT


@pytest.mark.parametrize("prefix", ["a" * 15, "a" * 40, "pre_fix", "pré", "a b"])
def test_prefix_must_be_alphanumeric_and_shorter_than_15(prefix: str) -> None:
    assert "prefix" in errors(prefix=prefix)
    assert ProfileCreate.model_validate(body(prefix="a" * 14)).prefix == "a" * 14


@pytest.mark.parametrize("schema", ["dbo;drop", "my-schema", "1abc", "", "a" * 129, 'x"y'])
def test_schema_must_be_alphanumeric(schema: str) -> None:
    assert "schema" in errors(schema=schema)


@pytest.mark.parametrize(("field", "value"), [("retryCount", 21), ("retryCount", -1), ("retryIntervalSeconds", 3601)])
def test_retry_bounds(field: str, value: int) -> None:
    msg = errors(**{field: value})[field]
    assert "less than or equal" in msg or "greater than or equal" in msg


@pytest.mark.parametrize(
    "guid", ["not-a-guid", "3f2504e04f8911d39a0c0305e82c3301", "{3f2504e0-4f89-11d3-9a0c-0305e82c3301}"]
)
def test_malformed_guids(guid: str) -> None:
    assert "organizationId" in errors(organizationId=guid)
    assert "id" in errors(id=guid)


def test_entities_are_unique_logical_names() -> None:
    assert "entities.0" in errors(entities=["Account"])
    assert "repeated: account" in errors(entities=["account", "account"])["entities"]


def test_a_new_profile_cannot_start_inactive() -> None:
    assert "state" in errors(state="inactive")


@pytest.mark.parametrize(
    "destination",
    [
        "https://contoso.vault.azure.net/keys/x",  # a key, not a secret
        "https://contoso.example.com/secrets/x",  # not a vault host
        "http://contoso.vault.azure.net/secrets/x",  # not https
        "Server=tcp:x;Password=p",  # an ODBC string without a scheme
        "mysql://u:p@h/db",
    ],
)
def test_destination_must_be_a_secret_uri_or_a_supported_dsn(destination: str) -> None:
    msg = errors(destination=destination)["destination"]
    assert "Key Vault secret URI" in msg
    assert destination not in msg  # the value itself is never echoed


def test_key_vault_reference_parses_with_and_without_version() -> None:
    ref = KeyVaultSecretRef.parse(KV + "/0123456789abcdef0123456789abcdef")
    assert ref is not None
    assert (ref.vault_url, ref.name, ref.version) == (
        "https://contoso-des.vault.azure.net",
        "reporting-db",
        "0123456789abcdef0123456789abcdef",
    )
    assert KeyVaultSecretRef.parse(KV) == KeyVaultSecretRef("https://contoso-des.vault.azure.net", "reporting-db", None)


def test_update_may_leave_the_destination_out() -> None:
    u = ProfileUpdate.model_validate({"name": "x", "organizationId": ORG})
    assert u.destination is None


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://des:S3cret-Pw!@db.example.com:5432/crm?sslmode=require&password=S3cret-Pw!",
        "mssql://sa:S3cret-Pw!@sql.example.com:1433/crm?TrustServerCertificate=yes",
        "mssql+odbc:///?odbc_connect=DRIVER%3D%7BODBC+Driver+18%7D%3BSERVER%3Dx%3BDATABASE%3Dcrm%3BPWD%3D%7BS3cret-Pw%21%7D",
    ],
)
def test_a_literal_destination_is_described_without_its_password(dsn: str) -> None:
    out = describe_literal(dsn)
    assert "S3cret-Pw" not in out
    assert "credentials hidden" in out
    assert "S3cret-Pw!" in secrets_of(dsn)
    assert "S3cret-Pw" not in scrub(f"error near {dsn}", dsn)


@settings(max_examples=60, deadline=None)
@given(
    password=st.text(
        alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="@/?#%"), min_size=6, max_size=30
    )
)
def test_no_password_survives_the_description(password: str) -> None:
    dsn = f"postgresql://user:{password}@host:5432/db"
    profile = Profile(
        id=str(uuid.uuid4()),
        name="n",
        organizationId=ORG,
        destination=dsn,
        createdAt="2026-01-01T00:00:00Z",  # type: ignore[arg-type]
        updatedAt="2026-01-01T00:00:00Z",  # type: ignore[arg-type]
    )
    out = ProfileOut.of(profile).model_dump_json()
    assert f":{password}@" not in out
    assert password not in describe_literal(dsn)
    assert password not in repr(profile)


def test_profile_round_trips_through_the_store_shape() -> None:
    c = ProfileCreate.model_validate(body(schema="reporting", prefix="crm", relationships=["accountleads"]))
    from shared.profiles.model import definition_of

    stored = StoredProfile(str(uuid.uuid4()), c.name, ORG, "active", definition_of(c))
    p = Profile.from_stored(stored)
    assert p.layout.schema == "reporting"
    assert p.layout.entity_table("account") == "crm_account"
    assert p.includes("accountleads")
    assert not p.includes("contact")
    assert Profile.from_stored(p.to_stored()) == p


def test_a_key_vault_uri_with_a_trailing_newline_is_refused() -> None:
    """The same class of bug as the GUID check (issue 12): ``re.match`` with ``$`` took a trailing
    newline, so ``.../secrets/db\\n`` passed as a Key Vault secret URI."""
    from shared.profiles.model import KEY_VAULT_SECRET_PATTERN, KeyVaultSecretRef

    good = "https://contoso-des.vault.azure.net/secrets/reporting-db"
    assert KeyVaultSecretRef.parse(good) is not None
    assert KeyVaultSecretRef.parse(good + "\n") is None
    assert "(?P<" not in KEY_VAULT_SECRET_PATTERN  # JSON Schema (ECMA 262) has no named groups
