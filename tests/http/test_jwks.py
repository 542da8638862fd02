"""The JWKS as a resource server reads it: every signing key (EdDSA, RS256, ES256) with its own
RFC 7638 kid, what each signs verifying against it, and a rotated key kept verifying while it is
listed in JWT_PREVIOUS_KEYS. First-party access tokens stay EdDSA."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from litestar.testing import TestClient

from infrastructure.keys import KeySettingRefused
from interfaces.container import Container, build, signing_keys_of
from interfaces.http.app import create_app
from interfaces.settings import Settings, load_settings
from tests.conftest import FAST_ARGON2, FakeClock
from tests.http.test_api import bearer, log_in, register_and_verify

Client = TestClient[Any]
# RFC 7638 §3.2: the required members of each key type, in the thumbprint.
REQUIRED = {"OKP": ("crv", "kty", "x"), "RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y")}
PRIVATE = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


def thumbprint(jwk: dict[str, Any]) -> str:
    members = {name: jwk[name] for name in REQUIRED[jwk["kty"]]}
    canonical = json.dumps(members, sort_keys=True, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()


def pem(key: PrivateKeyTypes) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def started(container: Container) -> Container:
    container.mail_broker.start_worker(threads=1, poll_ms=20)  # register_and_verify's mail
    return container


def settings_with(tmp_path: Path, **environ: str) -> Settings:
    return load_settings({"DATA_DIR": str(tmp_path / "var"), **FAST_ARGON2, **environ})


@pytest.fixture
def served(sqlite_settings: Settings, clock: FakeClock) -> Iterator[tuple[Client, Container]]:
    container = started(build(sqlite_settings, clock=clock))
    with TestClient(create_app(container, run_background=False)) as client:
        yield client, container
    container.close()


def claims_for(container: Container) -> dict[str, Any]:
    now = int(container.clock.now().timestamp())
    return {"iss": container.settings.issuer, "aud": "an-app", "sub": "s", "iat": now}


def test_the_jwks_publishes_each_signing_key_for_a_resource_server(
    served: tuple[Client, Container],
) -> None:
    client, container = served
    answer = client.get("/.well-known/jwks.json")
    assert answer.status_code == 200
    keys = answer.json()["keys"]
    assert sorted(key["alg"] for key in keys) == ["ES256", "EdDSA", "RS256"]
    for key in keys:
        assert key["use"] == "sig"
        assert key["kid"] == thumbprint(key), key["alg"]
        assert not PRIVATE & set(key), key["alg"]
    by_alg = {key["alg"]: key for key in keys}
    assert (by_alg["EdDSA"]["kty"], by_alg["EdDSA"]["crv"]) == ("OKP", "Ed25519")
    assert (by_alg["ES256"]["kty"], by_alg["ES256"]["crv"]) == ("EC", "P-256")
    assert by_alg["RS256"]["kty"] == "RSA"
    modulus = base64.urlsafe_b64decode(by_alg["RS256"]["n"] + "==")
    assert len(modulus) * 8 == 2048
    assert container.claim_signer.algorithms == ("EdDSA", "RS256", "ES256")

    # A resource server: the served JWKS, the key by the token's kid, the algorithm pinned.
    jwks = jwt.PyJWKSet.from_dict(answer.json())
    for algorithm in ("EdDSA", "RS256", "ES256"):
        token = container.claim_signer.sign(claims_for(container), algorithm, "JWT")
        header = jwt.get_unverified_header(token)
        assert (header["alg"], header["kid"], header["typ"]) == (
            algorithm,
            by_alg[algorithm]["kid"],
            "JWT",
        )
        verified = jwt.decode(token, jwks[header["kid"]], algorithms=[algorithm], audience="an-app")
        assert verified["sub"] == "s"


def test_first_party_access_tokens_stay_eddsa(served: tuple[Client, Container]) -> None:
    client, container = served
    register_and_verify(client, container)
    tokens = log_in(client)
    header = jwt.get_unverified_header(tokens["access_token"])
    keys = client.get("/.well-known/jwks.json").json()["keys"]
    (eddsa,) = [key for key in keys if key["alg"] == "EdDSA"]
    assert (header["alg"], header["kid"], header["typ"]) == ("EdDSA", eddsa["kid"], "at+jwt")


def test_a_rotated_key_keeps_verifying_while_it_is_listed(tmp_path: Path, clock: FakeClock) -> None:
    """Replace both keys, list the old JWKS in JWT_PREVIOUS_KEYS: tokens the old keys signed
    still verify (tessera's own API included), new ones are signed by the new keys only; drop
    the old JWKS and the old tokens are refused."""
    old = {
        "JWT_PRIVATE_KEY": pem(Ed25519PrivateKey.generate()),
        "JWT_RSA_PRIVATE_KEY": pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
    }
    new = {
        "JWT_PRIVATE_KEY": pem(Ed25519PrivateKey.generate()),
        "JWT_RSA_PRIVATE_KEY": pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
    }
    before = started(build(settings_with(tmp_path, **old), clock=clock))
    with TestClient(create_app(before, run_background=False)) as client:
        register_and_verify(client, before)
        tokens = log_in(client)
        old_jwks = client.get("/.well-known/jwks.json").json()
    old_id_token = before.claim_signer.sign(claims_for(before), "RS256", "JWT")
    before.close()
    old_kids = {key["kid"] for key in old_jwks["keys"]}
    replaced = {key["kid"] for key in old_jwks["keys"] if key["alg"] != "ES256"}

    during = build(
        settings_with(tmp_path, **new, JWT_PREVIOUS_KEYS=json.dumps(old_jwks)), clock=clock
    )
    with TestClient(create_app(during, run_background=False)) as client:
        assert client.get("/api/users/me", headers=bearer(tokens)).status_code == 200
        jwks = client.get("/.well-known/jwks.json").json()
        # The ES256 key did not change (DATA_DIR's): listed once, not twice.
        assert len(jwks["keys"]) == 5
        assert old_kids <= {key["kid"] for key in jwks["keys"]}
        fresh = log_in(client)
    assert jwt.get_unverified_header(fresh["access_token"])["kid"] not in replaced
    new_id_token = during.claim_signer.sign(claims_for(during), "RS256", "JWT")
    assert jwt.get_unverified_header(new_id_token)["kid"] not in replaced
    served = jwt.PyJWKSet.from_dict(jwks)
    for token in (old_id_token, new_id_token):
        key = served[jwt.get_unverified_header(token)["kid"]]
        assert jwt.decode(token, key, algorithms=["RS256"], audience="an-app")["sub"] == "s"
    during.close()

    after = build(settings_with(tmp_path, **new), clock=clock)
    with TestClient(create_app(after, run_background=False)) as client:
        refused = client.get("/api/users/me", headers=bearer(tokens))
        assert (refused.status_code, refused.json()["code"]) == (401, "invalid_access_token")
        assert client.get("/api/users/me", headers=bearer(fresh)).status_code == 200
        kids = {key["kid"] for key in client.get("/.well-known/jwks.json").json()["keys"]}
        assert len(kids) == 3
        assert kids.isdisjoint(replaced)
    after.close()


def test_the_previous_keys_may_be_a_file(tmp_path: Path) -> None:
    older = Ed25519PrivateKey.generate().public_key()
    jwk = jwt.algorithms.OKPAlgorithm.to_jwk(older, as_dict=True)
    listed = tmp_path / "previous-jwks.json"
    listed.write_text(json.dumps({"keys": [jwk]}))
    keys = signing_keys_of(settings_with(tmp_path, JWT_PREVIOUS_KEYS_FILE=str(listed)))
    assert thumbprint(jwk) in {key["kid"] for key in keys.jwks()["keys"]}
    assert keys.verifying_key(thumbprint(jwk), "EdDSA") == older
    assert keys.verifying_key(thumbprint(jwk), "RS256") is None  # a kid names one algorithm


def bad_settings(tmp_path: Path) -> list[tuple[dict[str, str], str]]:
    """Each bad setting, and what the refusal must say."""
    private_jwk = jwt.algorithms.OKPAlgorithm.to_jwk(Ed25519PrivateKey.generate(), as_dict=True)
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
    small_jwk = jwt.algorithms.RSAAlgorithm.to_jwk(small.public_key(), as_dict=True)
    rsa_key = "JWT_RSA_PRIVATE_KEY must hold an RSA private key of at least 2048 bits"
    return [
        ({"JWT_RSA_PRIVATE_KEY": pem(Ed25519PrivateKey.generate())}, rsa_key),
        ({"JWT_RSA_PRIVATE_KEY": pem(small)}, rsa_key),
        (
            {"JWT_EC_PRIVATE_KEY": pem(ec.generate_private_key(ec.SECP384R1()))},
            "JWT_EC_PRIVATE_KEY must hold an EC private key on P-256",
        ),
        (
            {"JWT_PRIVATE_KEY": "-----BEGIN PRIVATE KEY-----\nnope"},
            "JWT_PRIVATE_KEY must hold an Ed25519 private key",
        ),
        (
            {"JWT_RSA_PRIVATE_KEY_FILE": str(tmp_path / "missing.pem")},
            "JWT_RSA_PRIVATE_KEY_FILE: cannot read .*missing.pem",
        ),
        ({"JWT_PREVIOUS_KEYS": "not json"}, "JWT_PREVIOUS_KEYS must be a JWKS"),
        (
            {"JWT_PREVIOUS_KEYS": json.dumps({"keys": [private_jwk]})},
            "JWT_PREVIOUS_KEYS must hold public keys only",
        ),
        ({"JWT_PREVIOUS_KEYS": json.dumps({"keys": [small_jwk]})}, "RSA of at least 2048 bits"),
        (
            {"JWT_PREVIOUS_KEYS_FILE": str(tmp_path / "missing.json")},
            "JWT_PREVIOUS_KEYS_FILE: cannot read",
        ),
    ]


def test_a_bad_key_setting_is_refused_naming_it(tmp_path: Path) -> None:
    for environ, said in bad_settings(tmp_path):
        with pytest.raises(KeySettingRefused, match=said):
            signing_keys_of(settings_with(tmp_path, **environ))
