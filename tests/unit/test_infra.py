"""infra/ (issue 10): every Bicep file parses, every resource of the deployment is there with its
security settings, and the function app's settings match the settings the code reads, name for name.

No Bicep CLI or Azure here: pycep-parser reads the templates; checkov (scripts/checkov.sh) checks
them against its policies separately.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
from typing import Any

import pytest

from shared.config import AuthMode
from shared.storage.blobs import CONTAINERS, FAILURELOG, RETRY
from tests.support.infra import (
    INFRA,
    ROOT,
    bicep_app_settings,
    config_module,
    des_literals_in_shared,
    function_app_bindings,
    one,
    param_allowed,
    param_default,
    parsed,
    resources,
    setting_names_in_config,
    variable,
)

pytestmark = pytest.mark.unit

MAIN = "main.bicep"


# ------------------------------------------------------------------------------- shape (azd)
def test_every_bicep_file_parses_and_every_module_exists() -> None:
    docs = parsed()
    assert MAIN in docs
    assert len(docs) >= 8
    for file, doc in docs.items():
        for name, module in (doc.get("modules") or {}).items():
            target = (INFRA / file).parent / module["detail"]["path"]
            assert target.is_file(), f"{file}: module {name} points at missing {target}"


def test_azd_template_shape() -> None:
    azure_yaml = (ROOT / "azure.yaml").read_text(encoding="utf-8")
    assert re.search(r"^\s+host: function$", azure_yaml, re.M)
    assert re.search(r"^\s+language: python$", azure_yaml, re.M)
    assert "postdeploy:" in azure_yaml
    assert "./scripts/postdeploy.sh" in azure_yaml
    params = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    main_params = parsed()[MAIN]["parameters"]
    assert set(params) <= set(main_params), "main.parameters.json sets a parameter main.bicep does not have"
    required = {n for n, p in main_params.items() if "default" not in p}
    assert required <= set(params), f"azd cannot fill {required - set(params)}"
    # The service the azd tag names is the one azure.yaml deploys.
    site = one("Microsoft.Web/sites")
    assert "'azd-service-name'" in json.dumps(site.config["tags"])
    assert re.search(r"^  api:$", azure_yaml, re.M)


def test_outputs_are_upper_snake_and_names_come_from_abbreviations() -> None:
    outputs = parsed()[MAIN]["outputs"]
    assert outputs
    bad = [name for name in outputs if not re.fullmatch(r"[A-Z][A-Z0-9]*(_[A-Z0-9]+)*", name)]
    assert not bad
    abbrs = json.loads((INFRA / "abbreviations.json").read_text(encoding="utf-8"))
    main_text = (INFRA / MAIN).read_text(encoding="utf-8")
    used = set(re.findall(r"abbrs\.([A-Za-z]+)", main_text))
    assert used, "resource names should use abbreviations.json"
    assert used <= set(abbrs), f"unknown abbreviations {used - set(abbrs)}"
    assert set(abbrs) <= used, f"unused abbreviations {set(abbrs) - used}"


# ------------------------------------------------------------------------- the function app
def test_function_app_on_flex_consumption_python_311_with_user_assigned_identity() -> None:
    plan = one("Microsoft.Web/serverfarms")
    assert plan.prop("sku") == {"name": "FC1", "tier": "FlexConsumption"}
    assert plan.prop("properties", "reserved") is True
    site = one("Microsoft.Web/sites")
    assert site.prop("kind") == "functionapp,linux"
    assert site.prop("identity", "type") == "UserAssigned"
    assert site.prop("properties", "httpsOnly") is True
    assert site.prop("properties", "siteConfig", "minTlsVersion") == "1.2"
    runtime = site.prop("properties", "functionAppConfig", "runtime")
    assert runtime["name"] == "python"
    assert param_default(site.file, runtime["version"]) == "3.11"
    deployment = site.prop("properties", "functionAppConfig", "deployment", "storage")
    assert deployment["type"] == "blobContainer"
    assert deployment["authentication"]["type"] == "UserAssignedIdentity"
    assert one("Microsoft.ManagedIdentity/userAssignedIdentities")


def test_runtime_storage_is_identity_based() -> None:
    settings = bicep_app_settings()
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    for suffix in ("clientId", "blobServiceUri", "queueServiceUri"):
        assert f"AzureWebJobsStorage__{suffix}" in settings
    assert "AzureWebJobsStorage" not in settings, "no connection string: shared keys are off"
    assert not any("AccountKey" in json.dumps(v) for v in settings.values())
    # Flex Consumption takes the runtime from functionAppConfig; these settings are not allowed there.
    assert not {"FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "WEBSITE_RUN_FROM_PACKAGE"} & set(settings)


# --------------------------------------------------------------------------------- storage
def test_storage_account_is_locked_down() -> None:
    account = one("Microsoft.Storage/storageAccounts")
    props = account.prop("properties")
    assert props["allowSharedKeyAccess"] is False
    assert props["allowBlobPublicAccess"] is False
    assert props["minimumTlsVersion"] == "TLS1_2"
    assert props["supportsHttpsTrafficOnly"] is True


def test_data_containers_are_the_codes_containers() -> None:
    account = one("Microsoft.Storage/storageAccounts")
    assert tuple(variable(account.file, "dataContainers")) == CONTAINERS
    looped = resources("Microsoft.Storage/storageAccounts/blobServices/containers")
    assert len(looped) == 2  # the deployment package container and the data containers (a loop)


def test_lifecycle_rule_deletes_the_failure_log_after_30_days() -> None:
    policy = one("Microsoft.Storage/storageAccounts/managementPolicies")
    [rule] = policy.prop("properties", "policy", "rules")
    storage_file = policy.file
    kept = variable(storage_file, "keptContainers")
    assert FAILURELOG in kept
    assert set(kept) <= set(CONTAINERS)
    assert rule["definition"]["filters"]["prefixMatch"]["config"] == "${c}/"  # one prefix per kept container
    assert "appendBlob" in rule["definition"]["filters"]["blobTypes"]  # the failure log is append blobs
    days = rule["definition"]["actions"]["baseBlob"]["delete"]["daysAfterModificationGreaterThan"]
    assert days == "keptBlobDays"
    assert param_default(MAIN, "keptBlobDays") == 30


def test_event_grid_system_topic_on_the_storage_account() -> None:
    topic = one("Microsoft.EventGrid/systemTopics")
    assert topic.prop("properties", "topicType") == "Microsoft.Storage.StorageAccounts"
    assert "account" in json.dumps(topic.prop("properties", "source"))
    assert "AZURE_EVENTGRID_SYSTEM_TOPIC_NAME" in parsed()[MAIN]["outputs"]


# ------------------------------------------------------------------------------ Service Bus
def test_service_bus_entra_only_with_the_notifications_queue() -> None:
    namespace = one("Microsoft.ServiceBus/namespaces")
    assert namespace.prop("properties", "disableLocalAuth") is True
    assert namespace.prop("properties", "minimumTlsVersion") == "1.2"
    assert param_allowed(MAIN, "serviceBusSku") == ["Standard", "Premium"]
    queue = one("Microsoft.ServiceBus/namespaces/queues")
    props = queue.prop("properties")
    assert props["lockDuration"] == "PT5M"
    assert props["deadLetteringOnMessageExpiration"] is True
    assert props["requiresSession"] is False
    assert props["maxDeliveryCount"] == "maxDeliveryCount"
    assert 1 <= param_default(MAIN, "maxDeliveryCount") <= 100


# -------------------------------------------------------------------------------- Key Vault
def test_key_vault_rbac_soft_delete_purge_protection_and_the_blob_key() -> None:
    vault = one("Microsoft.KeyVault/vaults")
    props = vault.prop("properties")
    assert props["enableRbacAuthorization"] is True
    assert props["enableSoftDelete"] is True
    assert props["enablePurgeProtection"] is True
    key = one("Microsoft.KeyVault/vaults/keys")
    assert key.prop("properties", "kty") == "RSA"
    assert key.prop("properties", "keySize") >= 2048  # shared/storage/crypto.py refuses smaller RSA keys
    assert set(key.prop("properties", "keyOps")) >= {"wrapKey", "unwrapKey"}
    assert "keys/${keyName}" in json.dumps(parsed()[vault.file]["outputs"]["keyUri"])  # versionless


# ------------------------------------------------------------------------------- Azure SQL
def test_azure_sql_entra_only_tls_12_with_the_admin_database() -> None:
    server = one("Microsoft.Sql/servers")
    props = server.prop("properties")
    assert props["minimalTlsVersion"] == "1.2"
    assert props["administrators"]["azureADOnlyAuthentication"] is True
    assert props["administrators"]["administratorType"] == "ActiveDirectory"
    assert "administratorLoginPassword" not in props
    assert one("Microsoft.Sql/servers/databases")
    store = bicep_app_settings()["DES_ADMIN_STORE"]
    assert store.startswith("mssql://${identityClientId}@")
    assert "authentication=ActiveDirectoryManagedIdentity" in store


# ---------------------------------------------------------------------- monitoring and roles
def test_log_analytics_and_workspace_based_application_insights() -> None:
    one("Microsoft.OperationalInsights/workspaces")
    insights = one("Microsoft.Insights/components")
    assert insights.prop("properties", "WorkspaceResourceId")
    assert insights.prop("properties", "DisableLocalAuth") is True
    assert bicep_app_settings()["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"].endswith("Authorization=AAD")


ROLES = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0": "Azure Service Bus Data Receiver",
    "69a216fc-b8fb-44d8-bc22-1f3c2cd27a39": "Azure Service Bus Data Sender",
    "e147488a-f6f5-4113-8e2d-b22465e65bf6": "Key Vault Crypto Service Encryption User",
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
}


def test_least_privilege_role_assignments_for_the_identity() -> None:
    everyone = resources("Microsoft.Authorization/roleAssignments")
    assignments = [a for a in everyone if a.prop("properties", "principalId") == "identityPrincipalId"]
    rbac_file = assignments[0].file
    role_ids = variable(rbac_file, "roles")
    assert set(role_ids.values()) == set(ROLES), "a role was added or removed: update ROLES with its reason"
    used = set()
    for a in assignments:
        assert a.prop("properties", "principalType") == "ServicePrincipal"
        assert a.prop("properties", "principalId") == "identityPrincipalId"
        assert a.prop("scope"), f"{a.symbol}: every assignment is scoped to one resource, never the group"
        used.add(json.dumps(a.prop("properties", "roleDefinitionId")))
    assert len(assignments) == len(ROLES) == len(used)
    # The crypto role sits on the one key, not the vault.
    crypto = next(a for a in assignments if "keyVaultCryptoServiceEncryptionUser" in json.dumps(a.config))
    assert crypto.prop("scope") == "key"
    # The deploying operator gets one role: writing destination secrets into the vault.
    [operator] = [a for a in everyone if a not in assignments]
    assert operator.prop("properties", "principalId") == "operatorPrincipalId"
    assert operator.prop("scope") == "vault"
    assert variable(rbac_file, "keyVaultSecretsOfficer") == "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"


@pytest.mark.parametrize(
    "module",
    ["storage.bicep", "servicebus.bicep", "keyvault.bicep", "sql.bicep", "functionapp.bicep"],
)
def test_diagnostics_go_to_log_analytics(module: str) -> None:
    settings = [r for r in resources("Microsoft.Insights/diagnosticSettings") if r.file == f"modules/{module}"]
    assert settings, f"{module} has no diagnostic setting"
    for s in settings:
        assert s.prop("properties", "workspaceId") == "logAnalyticsWorkspaceId"


# ---------------------------------------------------------------- settings, name for name
# Settings the code reads that the deployment deliberately leaves unset, each with why. A name here
# that the code no longer reads fails the test too, so the list stays true.
NOT_SET_IN_AZURE = {
    "DES_DESTINATION_DSN": "single-destination mode; in Azure destinations are profiles in the admin store",
    "DES_DESTINATION_SCHEMA": "single-destination mode only",
    "DES_DESTINATION_PREFIX": "single-destination mode only",
    "DES_WRITE_DELETE_LOG": "single-destination mode only (a profile says it)",
    "DES_PROFILE_ID": "single-destination mode only",
    "DES_REJECTS_DIR": "local files; in Azure rejects go to Blob storage",
    "DES_ADMIN_API_KEY": "outside Azure only; in Azure the host's function keys or Entra",
    "DES_ADMIN_STORE_SCHEMA": "optional: the admin store's default schema (dbo) is used",
    "DES_ALLOW_LITERAL_DESTINATIONS": "development only: literal DSNs in profiles",
    "DES_BLOB_OLD_KEYS": "local keys only; the vault key rotates by version without it",
    "DES_API_URL": "read by the des CLI on the operator's machine (azd outputs DES_API_URL)",
    "DES_WRITE_ATTEMPTS": "tuning; the code default applies",
    "DES_SOURCE_LOCAL_WORKER": "des api only (its in-process page worker); in Azure source_pages drains the queue",
    "DES_PROFILE_CACHE_SECONDS": "tuning; the code default applies",
    "DES_SECRET_CACHE_SECONDS": "tuning; the code default applies",
    "DES_API_MAX_BODY_BYTES": "tuning; the code default applies",
    "DES_RETRY_COUNT": "tuning; the code default applies (profiles carry their own)",
    "DES_RETRY_INTERVAL_SECONDS": "tuning; the code default applies (profiles carry their own)",
    "DES_RETRY_INLINE_WAIT_SECONDS": "tuning; the code default applies",
    "DES_AZURITE_BIN": "local tooling (Azurite starter)",
    "DES_SOURCE_POLL_INTERVAL_SECONDS": "tuning; the code default applies (des sync's pause)",
    "DES_DATAVERSE_TOKEN": "simulators and tests only; in Azure tokens come from azure-identity",
    "DES_DATAVERSE_CERTIFICATE_PATH": "certificate auth needs a file the package does not ship: use client-secret",
    "DES_DATAVERSE_PAGE_SIZE": "tuning; the code default applies",
    "DES_DATAVERSE_MAX_CONCURRENCY": "tuning; the code default applies",
    "DES_DATAVERSE_MAX_ATTEMPTS": "tuning; the code default applies",
    "DES_DATAVERSE_MAX_RETRY_AFTER_SECONDS": "tuning; the code default applies",
    "DES_DATAVERSE_TIMEOUT_SECONDS": "tuning; the code default applies",
    "DES_DATAVERSE_VERIFY_DELETES": "tuning; the code default applies",
    "DES_DATAVERSE_LEASE_SECONDS": "tuning; the code default applies",
    "DES_BENCH_STORE": "local tooling (des bench)",
}
# Settings the code reads that the platform sets by itself (never in the Bicep, possibly not read today).
PROVIDED_BY_PLATFORM = {
    "WEBSITE_AUTH_ENABLED": "App Service sets it when App Service authentication is on",
}
# Settings in the Bicep that no code of ours names, each read by a platform component.
PLATFORM_SETTINGS = {
    "AZURE_CLIENT_ID": "azure-identity's DefaultAzureCredential picks the user-assigned identity",
    "APPLICATIONINSIGHTS_CONNECTION_STRING": "the Functions host and azure-monitor-opentelemetry",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "the Functions host: Entra auth to Application Insights",
    "PYTHON_ENABLE_OPENTELEMETRY": "the Python worker: OpenTelemetry context for host.json's telemetryMode",
}
# Microsoft's identity-based connection settings: <connection>__<suffix>.
IDENTITY_SUFFIXES = {
    "credential",
    "clientId",
    "blobServiceUri",
    "queueServiceUri",
    "tableServiceUri",
    "serviceUri",
    "accountName",
    "fullyQualifiedNamespace",
}
# Per connection, one setting that locates the service (the others are credential and clientId).
LOCATORS = {"blobServiceUri", "serviceUri", "accountName", "fullyQualifiedNamespace"}


def code_setting_names() -> set[str]:
    return setting_names_in_config() | des_literals_in_shared()


def test_the_configuration_module_is_found_and_names_settings() -> None:
    names = setting_names_in_config()
    assert config_module().name in ("config.py", "settings.py")
    assert "DES_BLOB_KEY" in names
    assert "DES_ADMIN_STORE" in names


def test_every_binding_connection_and_expression_is_set() -> None:
    settings = set(bicep_app_settings())
    bindings = function_app_bindings()
    assert {"ServiceBusConnection", "AzureWebJobsStorage"} <= bindings.connections
    for conn in bindings.connections:
        located = conn in settings or any(f"{conn}__{s}" in settings for s in LOCATORS)
        assert located, f"binding connection {conn}: neither {conn} nor {conn}__<service uri> is set"
        if conn not in settings:
            assert settings >= {f"{conn}__credential", f"{conn}__clientId"}, f"{conn}: identity settings missing"
    missing = set(bindings.expressions) - settings
    assert not missing, f"binding expressions without an app setting: {missing}"


def test_every_setting_the_code_reads_is_set_or_left_out_for_a_reason() -> None:
    settings = set(bicep_app_settings())
    code = code_setting_names()
    connections = function_app_bindings().connections
    left_out = set(NOT_SET_IN_AZURE) | set(PROVIDED_BY_PLATFORM)
    unaccounted = {n for n in code - settings - left_out if n not in connections}
    assert not unaccounted, f"the code reads {sorted(unaccounted)}: set them in the Bicep or say why not"
    stale = set(NOT_SET_IN_AZURE) - code
    assert not stale, f"NOT_SET_IN_AZURE names settings the code no longer reads: {sorted(stale)}"
    wrongly_left_out = set(NOT_SET_IN_AZURE) & set(function_app_bindings().expressions)
    assert not wrongly_left_out


def test_every_bicep_setting_is_one_the_code_or_the_platform_reads() -> None:
    code = code_setting_names()
    connections = function_app_bindings().connections
    for name in bicep_app_settings():
        conn, sep, suffix = name.partition("__")
        if sep:
            assert conn in connections or conn in code, f"{name}: {conn} is no connection of the code"
            assert suffix in IDENTITY_SUFFIXES, f"{name}: {suffix} is not an identity-based connection setting"
        else:
            assert name in code or name in PLATFORM_SETTINGS, f"{name} is set in the Bicep but read by nothing"
            assert name not in PROVIDED_BY_PLATFORM, f"{name} is the platform's to set"


def test_hosting_and_auth_mode_are_explicit_settings() -> None:
    settings = bicep_app_settings()
    assert settings["DES_HOSTING"] == "azure"
    assert settings["DES_AUTH_MODE"] == "authMode"
    # The Bicep's choices are the code's auth modes, value for value.
    assert set(param_allowed(MAIN, "authMode")) <= {m.value for m in AuthMode}


def test_des_api_url_output_for_the_cli() -> None:
    # The CLI reads DES_API_URL; azd writes outputs into the environment's .env.
    assert "DES_API_URL" in parsed()[MAIN]["outputs"]
    assert "DES_API_URL" in code_setting_names()


# --------------------------------------------------------------------------- the post-deploy step
def _postdeploy_db() -> Any:
    spec = importlib.util.spec_from_file_location("postdeploy_db", ROOT / "scripts" / "postdeploy_db.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_postdeploy_sql_creates_the_identity_user_with_store_roles_only() -> None:
    pd = _postdeploy_db()
    statements = pd.user_statements("id-des-abc123")
    exists = "IF NOT EXISTS (SELECT 1 FROM sys.database_principals WHERE name = N'id-des-abc123')"
    assert statements[0].startswith(exists)
    assert statements[0].endswith("CREATE USER [id-des-abc123] FROM EXTERNAL PROVIDER")
    grants = [re.fullmatch(r"ALTER ROLE (\w+) ADD MEMBER \[id-des-abc123\]", s) for s in statements[1:]]
    roles = {m.group(1) for m in grants if m}
    assert len(roles) == len(grants)
    assert roles == {"db_datareader", "db_datawriter", "db_ddladmin"}
    assert not any("db_owner" in s or "CONTROL" in s.upper() for s in statements)


@pytest.mark.parametrize("name", ["x]; DROP TABLE t; --", "a'b", "", "id des", "-leading"])
def test_postdeploy_refuses_names_that_are_no_identity_names(name: str) -> None:
    pd = _postdeploy_db()
    with pytest.raises(pd.PostDeployError):
        pd.user_statements(name)


def test_postdeploy_quoting_doubles_the_closing_characters() -> None:
    pd = _postdeploy_db()
    assert pd.quote_identifier("a]b") == "[a]]b]"
    assert pd.quote_literal("a'b") == "N'a''b'"
    template = "CREATE USER {identity} FROM EXTERNAL PROVIDER;\n-- a comment;\nSELECT {identity_literal};"
    assert pd.user_statements("id-1", template) == ["CREATE USER [id-1] FROM EXTERNAL PROVIDER", "SELECT N'id-1'"]


def test_postdeploy_connects_as_the_signed_in_entra_admin() -> None:
    pd = _postdeploy_db()
    env = {"AZURE_SQL_SERVER_FQDN": "sql-des-x.database.windows.net", "AZURE_SQL_DATABASE_NAME": "sqldb-des-admin"}
    dsn = pd.admin_dsn(env)
    assert dsn == (
        "mssql://sql-des-x.database.windows.net:1433/sqldb-des-admin?authentication=ActiveDirectoryDefault&encrypt=yes"
    )
    with pytest.raises(pd.PostDeployError, match="AZURE_SQL_DATABASE_NAME is not set"):
        pd.admin_dsn({"AZURE_SQL_SERVER_FQDN": "x.database.windows.net"})
    with pytest.raises(pd.PostDeployError, match="does not look like one"):
        pd.admin_dsn({**env, "AZURE_SQL_SERVER_FQDN": "evil;Authentication=SqlPassword"})


def _event_grid_blob_functions() -> dict[str, str]:
    """function name -> blob path of every Event Grid-sourced blob trigger in function_app.py."""
    tree = ast.parse((ROOT / "function_app.py").read_text(encoding="utf-8"))
    found = {}
    for fn in (n for n in tree.body if isinstance(n, ast.FunctionDef)):
        name = None
        path = None
        event_grid = False
        for dec in fn.decorator_list:
            if not isinstance(dec, ast.Call) or not isinstance(dec.func, ast.Attribute):
                continue
            if dec.func.attr == "function_name" and dec.args:
                name = ast.literal_eval(dec.args[0])
            if dec.func.attr == "blob_trigger":
                kws = {k.arg: k.value for k in dec.keywords}
                event_grid = "EVENT_GRID" in ast.unparse(kws.get("source", ast.Constant(None)))
                path = ast.unparse(kws["path"]) if "path" in kws else None
        if event_grid and name and path:
            found[name] = path
    return found


def test_postdeploy_subscribes_the_event_grid_blob_trigger_on_retry() -> None:
    script = (ROOT / "scripts" / "postdeploy.sh").read_text(encoding="utf-8")
    functions = _event_grid_blob_functions()
    assert len(functions) == 1, functions
    [name] = functions
    assert f"DES_RETRY_FUNCTION_NAME:-{name}}}" in script
    assert "functionName=Host.Functions.$FUNCTION_NAME&code=$KEY" in script
    assert "systemKeys.blobs_extension" in script
    assert f"/blobServices/default/containers/{RETRY}/" in script
    outputs = parsed()[MAIN]["outputs"]
    used = set(re.findall(r"\b(AZURE_[A-Z_]+)\b", script))
    assert used <= set(outputs), f"postdeploy.sh reads {used - set(outputs)}, which no output provides"


def test_dataverse_source_settings_use_the_sources_values() -> None:
    from shared.source.dataverse.settings import AUTH_KINDS, DEFAULT_POLL_SCHEDULE

    site = one("Microsoft.Web/sites")
    assert set(param_allowed(site.file, "dataverseAuth")) <= set(AUTH_KINDS)
    assert param_default(site.file, "dataverseAuth") == "managed-identity"
    assert param_default(site.file, "sourcePollSchedule") == DEFAULT_POLL_SCHEDULE
