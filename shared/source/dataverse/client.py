"""The Dataverse Web API client (adapter): httpx, tenacity retries, throttling, auth.

Requests (reference A, D): an entity set with ``Prefer: odata.track-changes,odata.maxpagesize=N,
odata.include-annotations="Microsoft.Dynamics.CRM.lookuplogicalname"``; the ``@odata.nextLink`` /
``@odata.deltaLink`` it returns, unchanged; one record by id; ``EntityDefinitions`` with the
``Attributes`` expansion and the type-specific casts; the organization's id.

Faults: 429 waits ``Retry-After`` (longer than the setting: :class:`Throttled`, the unit of work is
retried later); 5xx and connection errors retry with exponential backoff (tenacity), then
:class:`SourceUnavailable`; an expired or invalid delta token (``0x80044352``) is
:class:`ExpiredToken`; 401/403 :class:`AccessDenied`; other 4xx :class:`DataverseError` (permanent for
the entity). At most ``max_concurrency`` requests are in flight per environment (process-wide).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import quote

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from shared.source.dataverse.mapping import is_expired_token, loads
from shared.source.dataverse.settings import AuthSettings, DataverseSettings

log = logging.getLogger(__name__)

API_PATH = "api/data/v9.2/"
LOOKUP_ANNOTATIONS = 'odata.include-annotations="Microsoft.Dynamics.CRM.lookuplogicalname"'
ENTITY_SELECT = (
    "LogicalName,SchemaName,EntitySetName,PrimaryIdAttribute,PrimaryNameAttribute,ChangeTrackingEnabled,"
    "ObjectTypeCode,IsIntersect"
)
ATTRIBUTE_SELECT = "LogicalName,SchemaName,AttributeType,AttributeTypeName,AttributeOf,IsValidForRead,IsPrimaryId"
# Type-specific casts (reference D): cast name -> query options.
CASTS: dict[str, tuple[str, str]] = {
    "String": ("StringAttributeMetadata", "$select=LogicalName,MaxLength"),
    "Memo": ("MemoAttributeMetadata", "$select=LogicalName,MaxLength"),
    "Money": ("MoneyAttributeMetadata", "$select=LogicalName,Precision"),
    "Decimal": ("DecimalAttributeMetadata", "$select=LogicalName,Precision"),
    "Double": ("DoubleAttributeMetadata", "$select=LogicalName,Precision"),
    "Picklist": ("PicklistAttributeMetadata", "$select=LogicalName&$expand=OptionSet,GlobalOptionSet"),
    "MultiSelectPicklist": (
        "MultiSelectPicklistAttributeMetadata",
        "$select=LogicalName&$expand=OptionSet,GlobalOptionSet",
    ),
    "State": ("StateAttributeMetadata", "$select=LogicalName&$expand=OptionSet"),
    "Status": ("StatusAttributeMetadata", "$select=LogicalName&$expand=OptionSet"),
    "Boolean": ("BooleanAttributeMetadata", "$select=LogicalName&$expand=OptionSet"),
    "Lookup": ("LookupAttributeMetadata", "$select=LogicalName,Targets"),
}
_CAST_FOR_TYPE = {
    "String": "String", "Memo": "Memo", "Money": "Money", "Decimal": "Decimal", "Double": "Double",
    "Picklist": "Picklist", "MultiSelectPicklist": "MultiSelectPicklist", "State": "State", "Status": "Status",
    "Boolean": "Boolean", "Lookup": "Lookup", "Customer": "Lookup", "Owner": "Lookup",
}  # fmt: skip


# ------------------------------------------------------------------------------------ errors
class DataverseError(RuntimeError):
    """The Web API refused a request for a reason that retrying will not fix (entity-level)."""

    transient = False

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class ExpiredToken(DataverseError):
    """0x80044352: the delta token expired or became invalid (metadata change): full re-sync."""


class AccessDenied(DataverseError):
    """401/403: the token or the application user's privileges (environmental)."""


class NotFound(DataverseError):
    pass


class SourceUnavailable(DataverseError):
    """5xx or connection errors persisted through the retries (transient: try the unit again later)."""

    transient = True


class Throttled(SourceUnavailable):
    """429 asked to wait longer than we wait inside one unit of work."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message, status=429)
        self.retry_after = retry_after


class _Retry(Exception):
    """Internal: this attempt failed in a way worth retrying after ``wait`` seconds (None: backoff)."""

    def __init__(self, reason: str, wait: float | None) -> None:
        super().__init__(reason)
        self.wait = wait


# ------------------------------------------------------------------------------------ auth
class TokenProvider(Protocol):
    def token(self) -> str: ...


@dataclass(frozen=True)
class StaticToken:
    """A bearer token given as is (``DES_DATAVERSE_TOKEN``: simulators and tests)."""

    value: str

    def token(self) -> str:
        return self.value

    def __repr__(self) -> str:
        return "StaticToken(***)"


class AzureToken:
    """A token for ``<environment-url>/.default`` from an azure-identity credential, cached until near expiry."""

    def __init__(self, credential: Any, scope: str) -> None:
        self.credential = credential
        self.scope = scope
        self._token: str | None = None
        self._expires = 0.0
        self._lock = threading.Lock()

    def token(self) -> str:
        with self._lock:
            if self._token is None or time.time() > self._expires - 300:
                access = self.credential.get_token(self.scope)
                self._token, self._expires = access.token, float(access.expires_on)
            return self._token


def scope_for(environment_url: str) -> str:
    parts = httpx.URL(environment_url)
    return f"{parts.scheme}://{parts.host}/.default"


def credential_for(auth: AuthSettings) -> Any:  # pragma: no cover - needs Azure (tests/gated)
    """The azure-identity credential the settings describe (thin; checked against Azure in tests/gated)."""
    from azure.identity import (
        CertificateCredential,
        ClientSecretCredential,
        ManagedIdentityCredential,
        WorkloadIdentityCredential,
    )

    if auth.kind == "managed-identity":
        return ManagedIdentityCredential(client_id=auth.client_id) if auth.client_id else ManagedIdentityCredential()
    if auth.kind == "workload-identity":
        return WorkloadIdentityCredential(tenant_id=auth.tenant_id, client_id=auth.client_id)
    if not (auth.tenant_id and auth.client_id):
        raise DataverseError(f"{auth.kind} authentication needs the tenant id and the client id")
    if auth.kind == "certificate":
        if not auth.certificate_path:
            raise DataverseError("certificate authentication needs the certificate's path")
        return CertificateCredential(auth.tenant_id, auth.client_id, certificate_path=auth.certificate_path)
    if not auth.client_secret_uri:
        raise DataverseError("client-secret authentication needs the Key Vault secret URI of the secret")
    from shared.profiles.secrets import SecretResolver

    secret = SecretResolver().resolve(auth.client_secret_uri)
    return ClientSecretCredential(auth.tenant_id, auth.client_id, secret)


def token_provider(settings: DataverseSettings, environment_url: str) -> TokenProvider:
    if settings.token:
        return StaticToken(settings.token)
    return AzureToken(credential_for(settings.auth), scope_for(environment_url))


# ------------------------------------------------------------------------------------ limits
_GATES: dict[str, threading.BoundedSemaphore] = {}
_GATES_LOCK = threading.Lock()


def gate_for(environment_url: str, size: int) -> threading.BoundedSemaphore:
    """The process-wide cap on requests in flight to one environment (first caller sets its size)."""
    key = environment_url.rstrip("/").lower()
    with _GATES_LOCK:
        gate = _GATES.get(key)
        if gate is None:
            gate = _GATES[key] = threading.BoundedSemaphore(size)
        return gate


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("Retry-After")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        try:
            from email.utils import parsedate_to_datetime

            return max(0.0, (parsedate_to_datetime(raw) - datetime.now(UTC)).total_seconds())
        except (TypeError, ValueError):
            return None


def _error_of(body: Any) -> tuple[str | None, str]:
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code, message = error.get("code"), error.get("message")
        return (code if isinstance(code, str) else None, message if isinstance(message, str) else "")
    return (None, "")


@dataclass
class Stats:
    requests: int = 0
    throttled: int = 0
    retried: int = 0


class DataverseClient:
    """One environment's Web API. Thread-safe; share one per environment."""

    def __init__(
        self,
        environment_url: str,
        settings: DataverseSettings,
        *,
        tokens: TokenProvider | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        base = environment_url if environment_url.endswith("/") else environment_url + "/"
        if "/api/data/" not in base:
            base += API_PATH
        self.environment_url = environment_url.rstrip("/")
        self.api = base
        self.settings = settings
        self.tokens = tokens or token_provider(settings, environment_url)
        self.sleep = sleep
        self.gate = gate_for(self.environment_url, settings.max_concurrency)
        self.http = httpx.Client(transport=transport, timeout=settings.timeout_seconds, follow_redirects=False)
        self.stats = Stats()

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> DataverseClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------------------------------- plumbing
    def _headers(self, prefer: Iterable[str]) -> dict[str, str]:
        headers = {
            "Accept": "application/json",
            "OData-Version": "4.0",
            "OData-MaxVersion": "4.0",
            "Authorization": f"Bearer {self.tokens.token()}",
        }
        prefs = ",".join(prefer)
        if prefs:
            headers["Prefer"] = prefs
        return headers

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Retry) and exc.wait is not None:
            return float(exc.wait)
        base: float = min(30.0, 0.5 * 2.0 ** (state.attempt_number - 1))
        return base * (0.5 + random.random() / 2)

    def get(self, url: str, prefer: Iterable[str] = (), *, allow_404: bool = False) -> Any:
        """GET ``url`` (absolute, or relative to the API root) and decode it (numbers as Decimal)."""
        target = url if url.startswith(("http://", "https://")) else self.api + url
        prefs = tuple(prefer)
        retrying = Retrying(
            stop=stop_after_attempt(self.settings.max_attempts),
            wait=self._wait,
            retry=retry_if_exception(lambda e: isinstance(e, _Retry)),
            sleep=self.sleep,
            reraise=True,
        )
        try:
            return retrying(self._once, target, prefs, allow_404)
        except _Retry as exc:
            raise SourceUnavailable(
                f"Dataverse {self.environment_url} kept failing after {self.settings.max_attempts} attempts: {exc}"
            ) from None

    def _once(self, url: str, prefer: tuple[str, ...], allow_404: bool) -> Any:
        headers = self._headers(prefer)
        with self.gate:
            self.stats.requests += 1
            try:
                response = self.http.get(url, headers=headers)
            except httpx.TransportError as exc:  # connection refused/reset, timeouts
                self.stats.retried += 1
                log.warning("Dataverse request failed (%s); retrying", type(exc).__name__)
                raise _Retry(f"{type(exc).__name__}: {exc}", None) from exc
        status = response.status_code
        if status == 200:
            return loads(response.content)
        if status == 204:
            return {}
        try:
            body: Any = loads(response.content) if response.content else None
        except ValueError:
            body = None
        code, message = _error_of(body)
        if status == 429:
            wait = _retry_after(response)
            self.stats.throttled += 1
            if wait is not None and wait > self.settings.max_retry_after_seconds:
                raise Throttled(f"throttled by Dataverse ({code}): retry after {wait:.0f} s", wait)
            log.info("Dataverse throttled (%s); waiting %s s", code, wait)
            raise _Retry(f"429 {code}", wait if wait is not None else None)
        if status >= 500:
            self.stats.retried += 1
            raise _Retry(f"HTTP {status} {code or ''} {message[:200]}".strip(), None)
        if is_expired_token(status, body):
            raise ExpiredToken(message or "the delta token expired", status=status, code=code)
        if status == 404 and allow_404:
            return None
        text = f"HTTP {status} from Dataverse for {httpx.URL(url).path}: {code or ''} {message[:500]}".strip()
        if status in (401, 403):
            raise AccessDenied(text, status=status, code=code)
        if status == 404:
            raise NotFound(text, status=status, code=code)
        raise DataverseError(text, status=status, code=code)

    # -------------------------------------------------------------------------------- requests
    def organization_id(self) -> str:
        """The environment's organization id (``WhoAmI``; else the organizations table)."""
        try:
            who = self.get("WhoAmI")
            if isinstance(who, dict) and isinstance(who.get("OrganizationId"), str):
                return str(who["OrganizationId"]).lower()
        except NotFound:
            pass
        orgs = self.get("organizations?$select=organizationid")
        rows = orgs.get("value") if isinstance(orgs, dict) else None
        if rows and isinstance(rows[0], dict) and isinstance(rows[0].get("organizationid"), str):
            return str(rows[0]["organizationid"]).lower()
        raise DataverseError("could not read the organization id (WhoAmI, organizations)")

    def entity_definition(self, logical_name: str) -> dict[str, Any]:
        doc = self.get(f"EntityDefinitions(LogicalName='{quote(logical_name)}')?$select={ENTITY_SELECT}")
        if not isinstance(doc, dict):
            raise DataverseError(f"EntityDefinitions({logical_name}): unexpected response")
        return doc

    def attributes(self, logical_name: str) -> list[dict[str, Any]]:
        doc = self.get(
            f"EntityDefinitions(LogicalName='{quote(logical_name)}')?$select=LogicalName"
            f"&$expand=Attributes($select={ATTRIBUTE_SELECT})"
        )
        attrs = doc.get("Attributes") if isinstance(doc, dict) else None
        return [a for a in attrs or [] if isinstance(a, dict)]

    def cast(self, logical_name: str, kind: str) -> list[dict[str, Any]]:
        cast, options = CASTS[kind]
        doc = self.get(
            f"EntityDefinitions(LogicalName='{quote(logical_name)}')/Attributes/Microsoft.Dynamics.CRM.{cast}?{options}"
        )
        rows = doc.get("value") if isinstance(doc, dict) else None
        return [a for a in rows or [] if isinstance(a, dict)]

    def casts_for(self, logical_name: str, attributes: Iterable[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        """The type-specific casts the attributes need (one request per type present)."""
        needed: set[str] = set()
        for a in attributes:
            kind = a.get("AttributeType")
            tn = a.get("AttributeTypeName")
            if kind == "Virtual" and isinstance(tn, dict) and tn.get("Value") == "MultiSelectPicklistType":
                kind = "MultiSelectPicklist"
            cast = _CAST_FOR_TYPE.get(kind) if isinstance(kind, str) else None
            if cast is not None:
                needed.add(cast)
        return {kind: self.cast(logical_name, kind) for kind in sorted(needed)}

    def first_page_url(self, entity_set: str, select: str) -> str:
        return f"{self.api}{quote(entity_set)}?$select={select}"

    def page(self, url: str, *, track: bool) -> dict[str, Any]:
        """One page of a change-tracking read: a full load's first request or its next links
        (``track``: with ``odata.track-changes``, so the last page carries the delta link), or a
        delta link and its next links (the delta token marks them)."""
        prefer = [f"odata.maxpagesize={self.settings.page_size}", LOOKUP_ANNOTATIONS]
        if track:
            prefer.insert(0, "odata.track-changes")
        doc = self.get(url, prefer)
        if not isinstance(doc, dict):
            raise DataverseError("a change-tracking page that is not a JSON object")
        return doc

    def record(self, entity_set: str, record_id: str, select: str) -> dict[str, Any] | None:
        """One record by id (its current state), or None when it does not exist."""
        doc = self.get(f"{quote(entity_set)}({record_id})?$select={select}", [LOOKUP_ANNOTATIONS], allow_404=True)
        return doc if isinstance(doc, dict) else None
