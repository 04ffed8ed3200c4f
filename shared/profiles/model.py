"""Export profiles: the request bodies (pydantic, with clear 4xx reasons), the domain object the
fan-out uses, and the response shape (which never carries the destination's secret).

The fields follow DES's export profile: name (unique, required), organizationId, destination (in
Azure a Key Vault secret URI whose secret is the connection string), schema (alphanumeric, default
per database), prefix (alphanumeric, fewer than 15 characters), retryCount (0-20, default 12),
retryIntervalSeconds (0-3600, default 5), writeDeleteLog, entities, relationships (N:N), state.

Validation messages never quote the destination value: it may be a connection string with a
password in it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    field_validator,
    model_validator,
)

from shared.contract.models import GUID_PATTERN, NAME_PATTERN
from shared.destinations import Layout, registry
from shared.store.base import StoredProfile

NAME_MAX = 100
ENTITIES_MAX = 1000
DESTINATION_MAX = 4096
KEY_VAULT_HOSTS = ("vault.azure.net", "vault.azure.cn", "vault.usgovcloudapi.net", "vault.microsoftazure.de")
# https://<vault>.vault.azure.net/secrets/<name>[/<version>]
KEY_VAULT_SECRET_RE = re.compile(
    r"^https://(?P<vault>[A-Za-z][A-Za-z0-9-]{1,22}[A-Za-z0-9])\.(?P<host>"
    + "|".join(re.escape(h) for h in KEY_VAULT_HOSTS)
    + r")(?::443)?/secrets/(?P<name>[0-9A-Za-z-]{1,127})(?:/(?P<version>[0-9A-Fa-f]{32}))?/?$"
)
SCHEMA_PATTERN = r"^[A-Za-z][A-Za-z0-9]{0,127}$"
PREFIX_PATTERN = r"^[A-Za-z0-9]{0,14}$"
# Printable, no leading/trailing blanks, no control characters.
PROFILE_NAME_PATTERN = r"^[^\s\x00-\x1f\x7f](?:[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f])?$"

Guid = Annotated[str, StringConstraints(pattern=GUID_PATTERN), Field(examples=["3f2504e0-4f89-11d3-9a0c-0305e82c3301"])]
LogicalName = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]


class ProfileState(str, Enum):
    DRAFT = "draft"
    ACTIVE = "active"
    INACTIVE = "inactive"


class DestinationKind(str, Enum):
    KEY_VAULT = "keyVault"
    LITERAL = "literal"


@dataclass(frozen=True, slots=True)
class KeyVaultSecretRef:
    vault_url: str
    name: str
    version: str | None

    @classmethod
    def parse(cls, uri: str) -> KeyVaultSecretRef | None:
        m = KEY_VAULT_SECRET_RE.fullmatch(uri)  # not .match: its $ takes a trailing newline
        if m is None:
            return None
        return cls(f"https://{m['vault'].lower()}.{m['host']}", m["name"], m["version"])

    @property
    def uri(self) -> str:
        return f"{self.vault_url}/secrets/{self.name}" + (f"/{self.version}" if self.version else "")


def _any_case(text: str) -> str:
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c) for c in text)


# A literal connection string as _check_destination takes it (where literals are allowed): a known
# scheme (any case), then no control characters. For the schema (ECMA 262: no inline flags).
_SCHEMES = sorted({scheme for f in registry.FACTORIES for scheme in f.schemes})
LITERAL_DSN_PATTERN = "^(?:" + "|".join(_any_case(s) for s in _SCHEMES) + r"):[^\x00-\x1f]*$"


def destination_kind(value: str) -> DestinationKind:
    return DestinationKind.KEY_VAULT if value.lower().startswith("https://") else DestinationKind.LITERAL


def _check_destination(value: str) -> str:
    if value.lower().startswith("https://"):
        if KeyVaultSecretRef.parse(value) is None:
            raise ValueError(
                "destination must be a Key Vault secret URI: https://<vault>.vault.azure.net/secrets/<name>"
                "[/<32-hex version>]"
            )
        return value
    if registry.find(value) is None:
        raise ValueError(
            "destination must be a Key Vault secret URI (https://<vault>.vault.azure.net/secrets/<name>) or, "
            "where development settings allow it, a connection string starting with sqlite:///, "
            "postgresql://, mssql:// or mssql+odbc://"
        )
    if any(ord(c) < 32 for c in value):
        raise ValueError("destination must not contain control characters")
    return value


# ------------------------------------------------------------------------------ the source
ENVIRONMENT_URL_MAX = 2048
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class SourceAuthKind(str, Enum):
    """How the app gets a token for ``<environment-url>/.default`` (azure-identity)."""

    CLIENT_SECRET = "clientSecret"  # noqa: S105 - a kind name  # tenantId, clientId, clientSecretUri (Key Vault)
    CERTIFICATE = "certificate"  # tenantId, clientId, certificateUri (Key Vault secret: PEM or base64 PFX)
    MANAGED_IDENTITY = "managedIdentity"  # the app's identity; clientId for a user-assigned one
    WORKLOAD_IDENTITY = "workloadIdentity"  # tenantId, clientId (federated token file of the host)
    DEVELOPMENT_TOKEN = "developmentToken"  # noqa: S105 - DES_DATAVERSE_TOKEN: simulators and tests only


_AUTH_FIELDS: dict[SourceAuthKind, tuple[set[str], set[str]]] = {  # kind -> (required, allowed)
    SourceAuthKind.CLIENT_SECRET: ({"tenantId", "clientId", "clientSecretUri"},) * 2,
    SourceAuthKind.CERTIFICATE: ({"tenantId", "clientId", "certificateUri"},) * 2,
    SourceAuthKind.MANAGED_IDENTITY: (set(), {"clientId"}),
    SourceAuthKind.WORKLOAD_IDENTITY: (set(), {"tenantId", "clientId"}),
    SourceAuthKind.DEVELOPMENT_TOKEN: (set(), set()),
}


def _key_vault_uri(value: str | None, name: str) -> str | None:
    if value is not None and KeyVaultSecretRef.parse(value) is None:
        raise ValueError(f"{name} must be a Key Vault secret URI: https://<vault>.vault.azure.net/secrets/<name>")
    return value


# KEY_VAULT_SECRET_RE for JSON Schema (ECMA 262: no named groups): what the API accepts, stated.
KEY_VAULT_SECRET_PATTERN = re.sub(r"\(\?P<\w+>", "(", KEY_VAULT_SECRET_RE.pattern)
_AUTH_OPTIONAL = ("tenantId", "clientId", "clientSecretUri", "certificateUri")


def _auth_schema(schema: dict[str, Any]) -> None:
    """The credential's schema as one variant per kind (``oneOf``, discriminated by ``kind``): the
    fields each kind needs and allows, as :meth:`SourceAuth._fields_of_kind` checks them, so that
    what the schema admits is accepted and what it does not is refused."""
    guid = {"type": "string", "pattern": GUID_PATTERN}
    uri = {"type": "string", "maxLength": DESTINATION_MAX, "pattern": KEY_VAULT_SECRET_PATTERN}
    given = {"tenantId": guid, "clientId": guid, "clientSecretUri": uri, "certificateUri": uri}
    variants = []
    for kind, (required, allowed) in _AUTH_FIELDS.items():
        props: dict[str, Any] = {"kind": {"type": "string", "const": kind.value}}
        for name in _AUTH_OPTIONAL:
            if name in required:
                props[name] = given[name]
            elif name in allowed:
                props[name] = {"anyOf": [given[name], {"type": "null"}]}
            else:
                props[name] = {"type": "null"}
        variants.append({"type": "object", "title": kind.value, "additionalProperties": False,
                         "properties": props, "required": ["kind", *sorted(required)]})  # fmt: skip
    description = schema.get("description")
    schema.clear()
    schema.update({"oneOf": variants, "title": "SourceAuth"})
    if description:
        schema["description"] = description


class SourceAuth(BaseModel):
    """The source's credential. Secrets are never stored here: Key Vault secret URIs only."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, hide_input_in_errors=True, json_schema_extra=_auth_schema
    )

    kind: SourceAuthKind = Field(description="clientSecret, certificate, managedIdentity, workloadIdentity; "
                                 "developmentToken only where DES_DATAVERSE_TOKEN is set (simulators, tests).")
    tenantId: Guid | None = Field(default=None, description="Entra tenant of the app registration.")
    clientId: Guid | None = Field(default=None, description="The app registration (application user), or a "
                                  "user-assigned managed identity.")
    clientSecretUri: Annotated[str, StringConstraints(max_length=DESTINATION_MAX)] | None = Field(
        default=None, description="Key Vault secret URI holding the client secret (clientSecret)."
    )
    certificateUri: Annotated[str, StringConstraints(max_length=DESTINATION_MAX)] | None = Field(
        default=None, description="Key Vault secret URI of the certificate with its private key, PEM or PFX "
        "(a Key Vault certificate's secret) (certificate)."
    )

    @field_validator("clientSecretUri")
    @classmethod
    def _secret_uri(cls, v: str | None) -> str | None:
        return _key_vault_uri(v, "clientSecretUri")

    @field_validator("certificateUri")
    @classmethod
    def _certificate_uri(cls, v: str | None) -> str | None:
        return _key_vault_uri(v, "certificateUri")

    @model_validator(mode="after")
    def _fields_of_kind(self) -> SourceAuth:
        required, allowed = _AUTH_FIELDS[self.kind]
        given = {f for f in ("tenantId", "clientId", "clientSecretUri", "certificateUri") if getattr(self, f)}
        missing, extra = sorted(required - given), sorted(given - allowed)
        if missing:
            raise ValueError(f"{self.kind.value} authentication needs {', '.join(missing)}")
        if extra:
            raise ValueError(f"{self.kind.value} authentication takes no {', '.join(extra)}")
        return self


# What _check_environment_url accepts, stated for the schema (and enforced with it): https with a
# host name (plain http only on this machine), an optional port and path; no user, query, fragment.
ENVIRONMENT_URL_PATTERN = (
    r"^(?:https://[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|http://(?:127\.0\.0\.1|localhost|\[::1\]))"
    r"(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*)?$"
)


def _check_environment_url(value: str) -> str:
    parts = urlsplit(value)
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("https", "http") or not host:
        raise ValueError("environmentUrl must be the environment's URL, such as https://contoso.crm.dynamics.com")
    if parts.scheme == "http" and host not in LOOPBACK_HOSTS:
        raise ValueError("environmentUrl must use https (plain http only for a simulator on this machine)")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError("environmentUrl takes no user, query or fragment")
    if any(ord(c) < 33 for c in value):
        raise ValueError("environmentUrl must not contain blanks or control characters")
    if re.fullmatch(ENVIRONMENT_URL_PATTERN, value) is None:  # what the schema states
        raise ValueError("environmentUrl must be https://<host name>[:port][/path] (letters, digits, '.' and '-' "
                         "in the host name; plain http only for a simulator on this machine)")
    return value.rstrip("/")


class DataverseSource(BaseModel):
    """Where a profile's records come from: a Dataverse environment read through change tracking."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    kind: Literal["dataverse"] = "dataverse"
    environmentUrl: Annotated[str, StringConstraints(min_length=8, max_length=ENVIRONMENT_URL_MAX)] = Field(
        json_schema_extra={"pattern": ENVIRONMENT_URL_PATTERN},  # checked by _check_environment_url
        description="https://<org>.crm<N>.dynamics.com (or any base whose /api/data/v9.2/ serves the Web API).",
        examples=["https://contoso.crm.dynamics.com"],
    )
    auth: SourceAuth = Field(description="How the app authenticates to the environment.")

    @field_validator("environmentUrl")
    @classmethod
    def _url(cls, v: str) -> str:
        return _check_environment_url(v)

    @property
    def scope(self) -> str:
        """The token scope: ``<environment-url>/.default`` (scheme and host)."""
        parts = urlsplit(self.environmentUrl)
        return f"{parts.scheme}://{parts.netloc}/.default"


def _unique_names(values: list[str], what: str) -> list[str]:
    seen: set[str] = set()
    dupes = sorted({v for v in values if v in seen or seen.add(v)})  # type: ignore[func-returns-value]
    if dupes:
        raise ValueError(f"{what} must be unique; repeated: {', '.join(dupes[:10])}")
    return values


class _Fields(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    name: Annotated[
        str,
        StringConstraints(min_length=1, max_length=NAME_MAX, pattern=PROFILE_NAME_PATTERN),
        Field(description="Unique (case-insensitive) display name.", examples=["Sales to reporting"]),
    ]
    organizationId: Guid = Field(description="The Dataverse organization whose notifications this profile exports.")
    schema_: Annotated[str, StringConstraints(pattern=SCHEMA_PATTERN)] | None = Field(
        default=None,
        alias="schema",
        description="Destination schema, alphanumeric starting with a letter; default per database "
        "(PostgreSQL public, SQL Server dbo; SQLite has none).",
    )
    prefix: Annotated[str, StringConstraints(pattern=PREFIX_PATTERN)] = Field(
        default="", description="Table prefix, alphanumeric, fewer than 15 characters."
    )
    # Strict: JSON integers and booleans only (0 is not false, "12" is not 12), as the schema says.
    retryCount: StrictInt = Field(default=12, ge=0, le=20, description="Retries of a failing record (0-20).")
    retryIntervalSeconds: StrictInt = Field(
        default=5, ge=0, le=3600, description="Seconds between retries (0-3600)."
    )
    writeDeleteLog: StrictBool = Field(default=False, description="Keep <prefix>_DeleteLog of applied deletes.")
    entities: list[LogicalName] = Field(
        default_factory=list, max_length=ENTITIES_MAX, description="Logical names of the entities to export.",
        json_schema_extra={"uniqueItems": True},
    )
    relationships: list[LogicalName] = Field(
        default_factory=list,
        max_length=ENTITIES_MAX,
        description="N:N relationships (intersect entity logical names) to export.",
        json_schema_extra={"uniqueItems": True},
    )
    source: DataverseSource | None = Field(
        default=None,
        description="The Dataverse environment the profile pulls from (change tracking): initial sync on "
        "activation, then changes on a timer. Without it the profile takes notifications from Service Bus only.",
    )

    @field_validator("entities")
    @classmethod
    def _entities_unique(cls, v: list[str]) -> list[str]:
        return _unique_names(v, "entities")

    @field_validator("relationships")
    @classmethod
    def _relationships_unique(cls, v: list[str]) -> list[str]:
        return _unique_names(v, "relationships")

    @field_validator("destination", check_fields=False)
    @classmethod
    def _destination(cls, v: str | None) -> str | None:
        return None if v is None else _check_destination(v)


DestinationField = Annotated[
    str,
    StringConstraints(min_length=1, max_length=DESTINATION_MAX),
    Field(
        description="Key Vault secret URI holding the destination connection string "
        "(https://<vault>.vault.azure.net/secrets/<name>); a literal connection string only where "
        "DES_ALLOW_LITERAL_DESTINATIONS is set (development). Never returned.",
        examples=["https://contoso-des.vault.azure.net/secrets/reporting-db"],
    ),
]


def _creatable_states_schema(schema: dict[str, Any]) -> None:
    """The schema of a new profile's state: draft or active (inactive comes later, by deactivating)."""
    description = schema.get("description")
    schema.clear()
    schema.update({"type": "string", "enum": [ProfileState.DRAFT.value, ProfileState.ACTIVE.value],
                   "default": ProfileState.DRAFT.value})  # fmt: skip
    if description:
        schema["description"] = description


class ProfileCreate(_Fields):
    """Body of POST /profiles and POST /profiles/validate."""

    id: Guid | None = Field(default=None, description="Chosen by the server when absent.")
    destination: DestinationField
    state: ProfileState = Field(
        default=ProfileState.DRAFT,
        description="draft (default) or active: 'Create and Activate' (checks the destination first).",
        json_schema_extra=_creatable_states_schema,
    )

    @field_validator("state")
    @classmethod
    def _creatable_state(cls, v: ProfileState) -> ProfileState:
        if v is ProfileState.INACTIVE:
            raise ValueError("a new profile is draft or active; deactivate it later")
        return v


class ProfileUpdate(_Fields):
    """Body of PUT /profiles/{id}: replaces the fields; state changes through activate/deactivate."""

    destination: DestinationField | None = Field(
        default=None, description="Leave out to keep the current destination (it is never returned)."
    )


class Profile(BaseModel):
    """A stored profile, typed: what the fan-out and the API work with."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    organizationId: str
    destination: str  # secret reference or (development) literal: never returned, never logged
    schema_: str | None = Field(default=None, alias="schema")
    prefix: str = ""
    retryCount: int = 12
    retryIntervalSeconds: int = 5
    writeDeleteLog: bool = False
    entities: tuple[str, ...] = ()
    relationships: tuple[str, ...] = ()
    source: DataverseSource | None = None
    state: ProfileState = ProfileState.DRAFT
    revision: int = 1
    createdAt: datetime
    updatedAt: datetime

    def __repr__(self) -> str:  # the destination may be a literal connection string
        return f"Profile(id={self.id!r}, name={self.name!r}, state={self.state.value}, revision={self.revision})"

    __str__ = __repr__

    @property
    def layout(self) -> Layout:
        return Layout(self.schema_, self.prefix, self.writeDeleteLog)

    @property
    def exported(self) -> frozenset[str]:
        return frozenset(self.entities) | frozenset(self.relationships)

    @property
    def pulled(self) -> tuple[str, ...]:
        """The tables the source reads, each once: the entities, then the relationships' intersect entities."""
        return tuple(dict.fromkeys((*self.entities, *self.relationships)))

    def includes(self, entity: str) -> bool:
        return entity in self.exported

    @classmethod
    def from_stored(cls, s: StoredProfile) -> Profile:
        d: Mapping[str, Any] = s.definition
        return cls(
            id=s.id,
            name=s.name,
            organizationId=s.organization_id,
            destination=str(d["destination"]),
            schema=d.get("schema"),
            prefix=str(d.get("prefix", "")),
            retryCount=int(d.get("retryCount", 12)),
            retryIntervalSeconds=int(d.get("retryIntervalSeconds", 5)),
            writeDeleteLog=bool(d.get("writeDeleteLog", False)),
            entities=tuple(d.get("entities", ())),
            relationships=tuple(d.get("relationships", ())),
            source=DataverseSource.model_validate(d["source"]) if d.get("source") else None,
            state=ProfileState(s.state),
            revision=s.revision,
            createdAt=s.created_at,
            updatedAt=s.updated_at,
        )

    def to_stored(self) -> StoredProfile:
        return StoredProfile(
            id=self.id,
            name=self.name,
            organization_id=self.organizationId,
            state=self.state.value,
            definition=definition_of(self),
            revision=self.revision,
            created_at=self.createdAt,
            updated_at=self.updatedAt,
        )


def definition_of(p: _Fields | Profile, destination: str | None = None) -> dict[str, Any]:
    dest = destination if destination is not None else p.destination  # type: ignore[union-attr]
    return {
        "destination": dest,
        "schema": p.schema_,
        "prefix": p.prefix,
        "retryCount": p.retryCount,
        "retryIntervalSeconds": p.retryIntervalSeconds,
        "writeDeleteLog": p.writeDeleteLog,
        "entities": list(p.entities),
        "relationships": list(p.relationships),
        "source": p.source.model_dump(mode="json", exclude_none=True) if p.source is not None else None,
    }


def new_profile_id() -> str:
    return str(uuid.uuid4())


class ProfileOut(BaseModel):
    """A profile as the API returns it: the destination is described, its secret never shown."""

    id: str = Field(description="Lower-case GUID.")
    name: str
    organizationId: str
    destination: str = Field(
        description="The Key Vault secret URI, or for a literal connection string (development only) a "
        "description without password or options."
    )
    destinationKind: DestinationKind
    schema_: str | None = Field(default=None, alias="schema")
    prefix: str
    retryCount: int
    retryIntervalSeconds: int
    writeDeleteLog: bool
    entities: list[str]
    relationships: list[str]
    source: DataverseSource | None = Field(default=None, description="Key Vault URIs only: no secret is returned.")
    state: ProfileState
    revision: int = Field(description="Increases with every change; send it as If-Match to update safely.")
    createdAt: datetime
    updatedAt: datetime

    @classmethod
    def of(cls, p: Profile) -> ProfileOut:
        kind = destination_kind(p.destination)
        return cls(
            id=p.id,
            name=p.name,
            organizationId=p.organizationId,
            destination=p.destination if kind is DestinationKind.KEY_VAULT else describe_literal(p.destination),
            destinationKind=kind,
            schema=p.schema_,
            prefix=p.prefix,
            retryCount=p.retryCount,
            retryIntervalSeconds=p.retryIntervalSeconds,
            writeDeleteLog=p.writeDeleteLog,
            entities=list(p.entities),
            relationships=list(p.relationships),
            source=p.source,
            state=p.state,
            revision=p.revision,
            createdAt=p.createdAt,
            updatedAt=p.updatedAt,
        )


def describe_literal(dsn: str) -> str:
    """Where a literal connection string points, rebuilt from harmless parts only (allow-list).

    Nothing is masked in place: the destination registry assembles the description from scheme,
    user, host, port and database, so a password in any position (URL, query, ODBC keyword) cannot leak.
    """
    return registry.describe(dsn)
