"""The one redaction (shared/destinations/redaction.py, used through the destination registry):
credentials masked by value and by form in any text, DSN descriptions from plain parts only,
exceptions redacted without their causes, every log record redacted (issue 12)."""

from __future__ import annotations

import logging
from urllib.parse import quote_plus

import pytest

from shared.destinations import registry
from shared.destinations.redaction import install_log_redaction, redact_text, redacted
from shared.engine.ports import ConnectionFailed
from shared.profiles.secrets import SecretError

pytestmark = pytest.mark.unit

PW = "Unit-Canary-93"


@pytest.mark.parametrize(
    "dsn",
    [
        f"postgresql://u:{PW}@h/db",
        f"postgresql://u@h/db?sslmode=require&password={PW}",
        f"postgresql://u@h/db?PWD={PW}",
        f"postgresql://h/db password={PW}",
        f"postgresql://u:{PW}@h:port/db",
        f"postgresql://u:{PW}@[h/db",
        f"mssql://sa:{PW}@h:1433/crm",
        "mssql+odbc:///?odbc_connect=" + quote_plus(f"DRIVER={{ODBC Driver 18 for SQL Server}};SERVER=h;PWD={{{PW};}}"),
        f"host=h port=5432 password={PW} dbname=crm",
    ],
)
def test_redact_and_describe_never_show_the_password(dsn: str) -> None:
    assert PW not in registry.redact(dsn)
    assert PW not in registry.describe(dsn)
    assert PW not in registry.scrub(f"driver said: {dsn}", dsn)


def test_credentials_are_masked_by_form_in_any_text() -> None:
    texts = {
        "see postgresql://u:s3cr/et@h/db now": "see postgresql://u:***@h/db now",
        "postgresql://u@h/db?password=abc&x=1": "postgresql://u@h/db?password=***&x=1",
        "DRIVER={x};PWD={a;b}}c};UID=u": "DRIVER={x};PWD=***;UID=u",
        "host=h Password = 'p w' dbname=d": "host=h Password = *** dbname=d",
        'invalid percent-encoded token: "ab%zz"': 'invalid percent-encoded token: "***"',
        "AccountKey=abc+/==;EndpointSuffix=core": "AccountKey=***;EndpointSuffix=core",
    }
    for text, want in texts.items():
        assert redact_text(text) == want


def test_a_remembered_secret_is_masked_by_value() -> None:
    registry.secrets_of(f"postgresql://u:{PW}x@h/db")
    assert redact_text(f"the token {PW}x appeared alone") == "the token *** appeared alone"


def test_describe_shows_plain_parts_only() -> None:
    assert registry.describe("postgresql://des@db.example.com:5432/crm").startswith("postgresql://des@db.example.com:5432/crm")
    assert registry.describe(f"postgresql://db/crm password={PW}").startswith("postgresql://db/… ")


def test_redacted_keeps_the_class_and_flags_and_drops_the_cause() -> None:
    try:
        try:
            raise ValueError(f"libpq: password={PW}")
        except ValueError as inner:
            raise ConnectionFailed(f"cannot connect: postgresql://u:{PW}@h/db") from inner
    except ConnectionFailed as exc:
        clean = redacted(exc)
    assert type(clean) is ConnectionFailed
    assert PW not in str(clean)
    assert clean.__cause__ is None
    assert clean.__suppress_context__
    flagged = redacted(SecretError(f"vault said password={PW}", transient=True))
    assert isinstance(flagged, SecretError)
    assert flagged.transient is True
    assert PW not in str(flagged)
    plain = ValueError("nothing secret")
    assert redacted(plain) is plain


def test_every_log_record_is_redacted(caplog: pytest.LogCaptureFixture) -> None:
    install_log_redaction()
    log = logging.getLogger("tests.redaction")
    with caplog.at_level(logging.INFO):
        log.warning("opening %s", f"postgresql://u:{PW}@h/db")
        try:
            raise ConnectionFailed(f"refused: password={PW}")
        except ConnectionFailed:
            log.exception("failed")
    assert PW not in caplog.text
    assert "postgresql://u:***@h/db" in caplog.text
    assert "password=***" in caplog.text
