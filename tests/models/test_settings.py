"""Every AUTORISK_* setting is read by one typed object, with one line naming a value that cannot be used."""

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from models.names import CHAMPION, MODEL_NAME
from models.settings import ENV_PREFIX, Settings, SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("features", "models", "pipelines", "serving")


@pytest.fixture
def clean(monkeypatch):
    for name in [n for n in __import__("os").environ if n.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(name)
    return monkeypatch


def test_every_autorisk_variable_the_code_names_is_a_field_and_only_settings_reads_the_environment():
    fields = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    named, readers = set(), []
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            named |= set(re.findall(r"AUTORISK_[A-Z_]*[A-Z]", text))
            # Reads, not the writes by which `autorisk serve` and a Bento pass the pinned version on.
            reads = re.findall(
                r"environ\.get\(\s*[\"']AUTORISK_|getenv\(\s*[\"']AUTORISK_"
                r"|environ\[\s*[\"']AUTORISK_\w+[\"']\s*\](?!\s*=[^=])",
                text,
            )
            if reads and path.relative_to(ROOT).as_posix() != "models/settings.py":
                readers.append(path.relative_to(ROOT).as_posix())
    assert named - {"AUTORISK_"} <= fields
    assert readers == []


def test_defaults_without_any_variable(clean):
    settings = load_settings()
    assert (settings.api_token, settings.max_body_bytes, settings.body_timeout_s, settings.store_timeout_s) == (
        None,
        1 << 20,
        10.0,
        15.0,
    )
    assert settings.workers >= 1 and settings.fhir_servers == ()
    assert (settings.model_name, settings.model_alias, settings.model_version) == (MODEL_NAME, CHAMPION, None)


def test_values_are_read_as_their_types(clean):
    clean.setenv("AUTORISK_API_TOKEN", "  secret ")
    clean.setenv("AUTORISK_WORKERS", "3")
    clean.setenv("AUTORISK_BODY_TIMEOUT_S", "2.5")
    clean.setenv("AUTORISK_STORE_TIMEOUT_S", "0.5")
    clean.setenv("AUTORISK_FHIR_SERVERS", " http://a.test/fhir/ , ,https://b.test ")
    clean.setenv("AUTORISK_MODEL_VERSION", "")
    clean.setenv("autorisk_max_body_bytes", "1")  # the names are upper case only
    settings = load_settings()
    assert settings.api_token == "secret" and settings.workers == 3 and settings.body_timeout_s == 2.5
    assert settings.store_timeout_s == 0.5 and settings.max_body_bytes == 1 << 20
    assert settings.fhir_servers == ("http://a.test/fhir", "https://b.test")
    assert settings.model_version is None  # set but empty: no pin
    with pytest.raises(ValidationError):
        settings.workers = 4  # frozen


@pytest.mark.parametrize(
    "name, value, message",
    [
        (
            "AUTORISK_STORE_TIMEOUT_S",
            "soon",
            "AUTORISK_STORE_TIMEOUT_S: expected a positive number of seconds, got 'soon'",
        ),
        (
            "AUTORISK_STORE_TIMEOUT_S",
            "inf",
            "AUTORISK_STORE_TIMEOUT_S: expected a positive number of seconds, got 'inf'",
        ),
        (
            "AUTORISK_BODY_TIMEOUT_S",
            "0",
            "AUTORISK_BODY_TIMEOUT_S: expected a number of seconds above 0 and below 30 "
            "(the server's limit for a whole request), got '0'",
        ),
        ("AUTORISK_WORKERS", "0", "AUTORISK_WORKERS: expected a positive whole number of processes, got '0'"),
        ("AUTORISK_API_TOKEN", "", "AUTORISK_API_TOKEN is set but empty; unset it to serve without authentication"),
    ],
)
def test_a_value_that_cannot_be_used_is_one_line_naming_it(clean, name, value, message):
    clean.setenv(name, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert str(raised.value) == message


def test_of_several_bad_values_the_first_in_the_settings_order_is_named(clean):
    clean.setenv("AUTORISK_WORKERS", "two")
    clean.setenv("AUTORISK_MAX_BODY_BYTES", "big")
    with pytest.raises(SettingsError, match="^AUTORISK_MAX_BODY_BYTES: "):
        load_settings()
