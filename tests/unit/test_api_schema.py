"""schemathesis against the admin API's own /openapi.json, in process (ASGI), with a valid key:
no 5xx, status codes, content types, headers and bodies as the schema says.

Destinations are Key Vault secret URIs resolved by :class:`tests.support.admin.KeyVaultDouble`
(a test double of the service) to SQLite files in the test's folder, and literal connection
strings are not allowed, so generated requests never reach beyond this machine's files. Examples
are bounded so the run stays well under a minute.
"""

from __future__ import annotations

import atexit
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks as st_checks

from shared.api import ApiServices, AuthConfig, create_app
from shared.config import ProfilesConfig
from shared.root import build_runtime
from tests.support.admin import ADMIN_KEY, KeyVaultDouble, vault_resolver

pytestmark = [pytest.mark.unit, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

MAX_EXAMPLES = 50


class AnySecretVault(KeyVaultDouble):
    """Every secret name resolves to its own SQLite file (the double maps names to DSNs lazily)."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.folder = folder

    def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        m = re.search(r"/secrets/([0-9A-Za-z-]+)", request.url or "")
        if m and m.group(1) not in self.secrets:
            self.secrets[m.group(1)] = f"sqlite:///{self.folder / (m.group(1)[:40] + '.db')}"
        return super().send(request, *args, **kwargs)


# schemathesis's lazy fixture loader does not run on pytest 9, so the app is built at collection:
# a real SQLite store in a temporary folder, removed when the test process ends.
_TMP = tempfile.TemporaryDirectory(prefix="des-schemathesis-")
_RUNTIME = build_runtime(
    ProfilesConfig(store_dsn=f"sqlite:///{Path(_TMP.name) / 'admin.db'}"),
    resolver=vault_resolver(AnySecretVault(Path(_TMP.name))),
)
_APP = create_app(ApiServices(store=_RUNTIME.store, profiles=_RUNTIME.service, auth=AuthConfig(api_key=ADMIN_KEY)))
atexit.register(_TMP.cleanup)
atexit.register(_RUNTIME.close)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    schema = schemathesis.openapi.from_asgi("/openapi.json", _APP, headers={"x-functions-key": ADMIN_KEY})

CHECKS = [
    st_checks.not_a_server_error,
    st_checks.status_code_conformance,
    st_checks.content_type_conformance,
    st_checks.response_headers_conformance,
    st_checks.response_schema_conformance,
]


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_schema(case: Any) -> None:
    case.call_and_validate(headers={"x-functions-key": ADMIN_KEY}, checks=CHECKS)
