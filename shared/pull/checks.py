"""Live check of a profile's source, as named steps (validate, test, activate).

``source token`` (a token for ``<environment-url>/.default``), ``source reachable`` (``WhoAmI``),
``source organization`` (the environment's organization id is the profile's), then per table:
``<table>: exists`` (``EntityDefinitions``), ``<table>: change tracking`` (``ChangeTrackingEnabled``;
an N:N intersect table without it is reloaded in full each poll) and ``<table>: organization-level
read`` (the caller's ``prvRead<SchemaName>`` at ``Global`` depth from ``RetrieveUserPrivileges``;
where that function cannot be read, a one-row change-tracking read decides). Reference A1, D, E.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import httpx

from shared.destinations.checks import CheckReport
from shared.profiles.model import DataverseSource
from shared.profiles.ports import SourceReadError, SourceTable
from shared.pull.auth import SecretSource, token_provider
from shared.source.dataverse.client import (
    AccessDenied,
    DataverseClient,
    DataverseError,
    NotFound,
    SourceUnavailable,
)
from shared.source.dataverse.settings import DataverseSettings

log = logging.getLogger(__name__)

TOKEN, REACHABLE, ORGANIZATION = "source token", "source reachable", "source organization"
GLOBAL = "Global"
TABLE_SELECT = "LogicalName,SchemaName,EntitySetName,ChangeTrackingEnabled,IsIntersect,DisplayName"


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _privileges(client: DataverseClient, user_id: str | None) -> dict[str, str] | None:
    """prvRead<SchemaName> (lower case) -> depth, or None when the function cannot be read."""
    if not user_id:
        return None
    try:
        doc = client.get(f"systemusers({user_id})/Microsoft.Dynamics.CRM.RetrieveUserPrivileges()")
    except DataverseError as exc:
        log.info("RetrieveUserPrivileges not readable (%s); probing reads instead", exc)
        return None
    rows = doc.get("RolePrivileges") if isinstance(doc, dict) else None
    if not isinstance(rows, list):
        return None
    out: dict[str, str] = {}
    order = {"None": 0, "Basic": 1, "Local": 2, "Deep": 3, "Global": 4}
    for r in rows:
        if isinstance(r, dict) and isinstance(r.get("PrivilegeName"), str) and isinstance(r.get("Depth"), str):
            name, depth = r["PrivilegeName"].lower(), r["Depth"]
            if order.get(depth, 0) >= order.get(out.get(name, "None"), 0):
                out[name] = depth
    return out


def _probe(client: DataverseClient, definition: dict[str, Any]) -> tuple[bool, str]:
    """A one-row change-tracking read of the table (the privilege Dataverse checks for it)."""
    entity_set, key = str(definition.get("EntitySetName") or ""), str(definition.get("PrimaryIdAttribute") or "")
    try:
        client.page(client.first_page_url(entity_set, key), track=bool(definition.get("ChangeTrackingEnabled")))
    except AccessDenied as exc:
        return False, f"the caller cannot read the table at organization level: {exc}"
    except DataverseError as exc:
        return False, f"a change-tracking read failed: {exc}"
    return True, "a change-tracking read succeeded"


def check_source(
    source: DataverseSource,
    *,
    organization_id: str,
    tables: Iterable[str],
    settings: DataverseSettings,
    secrets: SecretSource,
    transport: httpx.BaseTransport | None = None,
) -> CheckReport:
    """Every step named; stops after a failed token or reachability step (nothing else can be checked)."""
    report = CheckReport()
    try:
        tokens = token_provider(source, settings, secrets)
        tokens.token()
    except Exception as exc:
        report.add(TOKEN, False, f"no token for {source.scope} ({source.auth.kind.value}): {_reason(exc)}")
        return report
    report.add(TOKEN, True, f"{source.auth.kind.value}, scope {source.scope}")
    quick = replace(settings, max_attempts=2, timeout_seconds=min(settings.timeout_seconds, 15.0),
                    max_retry_after_seconds=5.0, page_size=1)  # fmt: skip
    with DataverseClient(source.environmentUrl, quick, tokens=tokens, transport=transport) as client:
        try:
            who = client.get("WhoAmI")
        except AccessDenied as exc:
            report.add(REACHABLE, False, f"the environment refused the token (HTTP {exc.status}): is the app an "
                       f"application user of the environment with a security role? {exc}")  # fmt: skip
            return report
        except DataverseError as exc:
            report.add(REACHABLE, False, f"{client.api}: {exc}")
            return report
        who = who if isinstance(who, dict) else {}
        report.add(REACHABLE, True, f"{client.api} (user {who.get('UserId')})")
        org = str(who.get("OrganizationId") or "").lower()
        report.add(
            ORGANIZATION, org == organization_id.lower(),
            f"organization {org}" if org == organization_id.lower()
            else f"the environment's organization is {org or 'unknown'}, the profile's organizationId is "
            f"{organization_id.lower()}: notifications would not reach the profile",
        )  # fmt: skip
        privileges = _privileges(client, who.get("UserId") if isinstance(who.get("UserId"), str) else None)
        for table in tables:
            _check_table(report, client, table, privileges)
    return report


def _check_table(report: CheckReport, client: DataverseClient, table: str, privileges: dict[str, str] | None) -> None:
    try:
        d = client.entity_definition(table)
    except NotFound:
        report.add(f"{table}: exists", False, f"no table with the logical name {table!r} in this environment")
        return
    except DataverseError as exc:
        report.add(f"{table}: exists", False, str(exc))
        return
    report.add(f"{table}: exists", True, f"entity set {d.get('EntitySetName')}")
    if d.get("ChangeTrackingEnabled") is True:
        report.add(f"{table}: change tracking", True, "on")
    elif d.get("IsIntersect") is True:
        report.add(f"{table}: change tracking", True, "off: an N:N intersect table, reloaded in full each poll")
    else:
        report.add(f"{table}: change tracking", False, "off: turn on 'Track changes' in the table's properties "
                   "(Advanced options; it cannot be turned off again), or remove the table from the profile")
    name = f"prvread{d.get('SchemaName') or table}".lower()
    step = f"{table}: organization-level read"
    if privileges is not None:
        depth = privileges.get(name, "None")
        if depth == GLOBAL:
            report.add(step, True, f"prvRead{d.get('SchemaName')} at Global depth")
        else:
            report.add(step, False, f"the caller has prvRead{d.get('SchemaName')} at {depth} depth; change tracking "
                       "needs organization-level (Global) Read: give the application user a role with it")
        return
    ok, detail = _probe(client, d)
    report.add(step, ok, detail)


def _label(value: Any) -> str | None:
    """A Label's text (``UserLocalizedLabel.Label``, else the first localized label)."""
    if not isinstance(value, dict):
        return None
    user = value.get("UserLocalizedLabel")
    if isinstance(user, dict) and isinstance(user.get("Label"), str) and user["Label"]:
        return str(user["Label"])
    for item in value.get("LocalizedLabels") or ():
        if isinstance(item, dict) and isinstance(item.get("Label"), str) and item["Label"]:
            return str(item["Label"])
    return None


def list_tables(
    source: DataverseSource,
    *,
    settings: DataverseSettings,
    secrets: SecretSource,
    transport: httpx.BaseTransport | None = None,
) -> list[SourceTable]:
    """Every table of the environment (``EntityDefinitions``), by logical name: what a profile could
    export. :class:`SourceReadError` with the reason: the token, a refusal, an unreachable environment."""
    try:
        tokens = token_provider(source, settings, secrets)
        tokens.token()
    except Exception as exc:
        raise SourceReadError(f"no token for {source.scope} ({source.auth.kind.value}): {_reason(exc)}",
                              transient=False) from exc  # fmt: skip
    quick = replace(settings, max_attempts=2, timeout_seconds=min(settings.timeout_seconds, 15.0),
                    max_retry_after_seconds=5.0)  # fmt: skip
    with DataverseClient(source.environmentUrl, quick, tokens=tokens, transport=transport) as client:
        try:
            doc = client.get(f"EntityDefinitions?$select={TABLE_SELECT}")
        except AccessDenied as exc:
            raise SourceReadError(f"the environment refused the token (HTTP {exc.status}): is the app an "
                                  f"application user of the environment with a security role? {exc}",
                                  transient=False) from exc  # fmt: skip
        except SourceUnavailable as exc:
            raise SourceReadError(f"{client.api}: {exc}", transient=True) from exc
        except DataverseError as exc:
            raise SourceReadError(f"{client.api}: {exc}", transient=False) from exc
    rows = doc.get("value") if isinstance(doc, dict) else None
    if not isinstance(rows, list):
        raise SourceReadError(f"{client.api}EntityDefinitions: unexpected response", transient=False)
    out = [
        SourceTable(
            logical_name=str(r["LogicalName"]), schema_name=str(r.get("SchemaName") or r["LogicalName"]),
            entity_set_name=str(r.get("EntitySetName") or ""), display_name=_label(r.get("DisplayName")),
            change_tracking=r.get("ChangeTrackingEnabled") is True, is_intersect=r.get("IsIntersect") is True,
        )
        for r in rows
        if isinstance(r, dict) and isinstance(r.get("LogicalName"), str) and r["LogicalName"]
    ]
    return sorted(out, key=lambda t: t.logical_name)
