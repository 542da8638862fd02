from __future__ import annotations

import re
from pathlib import Path

import pytest

from interfaces.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent


def test_env_example_lists_every_setting_and_nothing_else() -> None:
    documented = set(
        re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M)
    )
    assert documented == {f.upper() for f in Settings.__struct_fields__}


def test_settings_come_typed_from_strings() -> None:
    settings = load_settings(
        {"PORT": "9000", "REQUIRE_VERIFIED_EMAIL": "false", "DATABASE_URL": ""}
    )
    assert settings.port == 9000
    assert settings.require_verified_email is False
    assert settings.database_url is None


def test_a_bad_setting_stops_the_service_with_its_name() -> None:
    with pytest.raises(SystemExit, match="PORT"):
        load_settings({"PORT": "eighty"})
    with pytest.raises(SystemExit, match="PASSWORD_MIN_LENGTH"):
        load_settings({"PASSWORD_MIN_LENGTH": "4"})  # NIST: never fewer than 8
