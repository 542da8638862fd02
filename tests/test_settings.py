from __future__ import annotations

import re
from pathlib import Path

import pytest

from interfaces.settings import PROVIDER_SETTINGS, Settings, identity_providers, load_settings

ROOT = Path(__file__).resolve().parent.parent


def test_env_example_lists_every_setting_and_nothing_else() -> None:
    documented = set(
        re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M)
    )
    gathered = {"OIDC_PROVIDER_VALUES"}  # not a variable: OIDC_<NAME>_* gathered
    assert documented == {f.upper() for f in Settings.__struct_fields__} - gathered
    per_provider = set(
        re.findall(r"^#\s*OIDC_<NAME>_([A-Z_]+)=", (ROOT / ".env.example").read_text(), re.M)
    )
    assert per_provider == set(PROVIDER_SETTINGS)


def test_providers_come_from_their_variables_with_presets_filled_in() -> None:
    settings = load_settings(
        {
            "OIDC_PROVIDERS": "google,github,corp,microsoft",
            "OIDC_GOOGLE_CLIENT_ID": "g",
            "OIDC_GOOGLE_CLIENT_SECRET": "gs",
            "OIDC_GITHUB_CLIENT_ID": "h",
            "OIDC_GITHUB_CLIENT_SECRET": "hs",
            "OIDC_CORP_ISSUER": "https://id.corp.example",
            "OIDC_CORP_CLIENT_ID": "c",
            "OIDC_CORP_CLIENT_SECRET": "cs",
            "OIDC_CORP_TRUST_MFA": "true",
            "OIDC_MICROSOFT_CLIENT_ID": "m",
            "OIDC_MICROSOFT_CLIENT_SECRET": "ms",
            "OIDC_MICROSOFT_TENANT": "organizations",
        }
    )
    google, github, corp, microsoft = identity_providers(settings)
    assert (google.issuer, google.label, google.kind) == (
        "https://accounts.google.com",
        "Google",
        "oidc",
    )
    assert (github.kind, github.scopes, github.label) == (
        "github",
        "read:user user:email",
        "GitHub",
    )
    assert (corp.issuer, corp.trust_mfa, corp.scopes) == (
        "https://id.corp.example",
        True,
        "openid email profile",
    )
    assert microsoft.issuer == "https://login.microsoftonline.com/organizations/v2.0"


def test_a_provider_without_its_client_stops_the_service() -> None:
    settings = load_settings({"OIDC_PROVIDERS": "corp", "OIDC_CORP_ISSUER": "https://x.example"})
    with pytest.raises(SystemExit, match="OIDC_CORP_CLIENT_ID"):
        identity_providers(settings)


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
