"""Key material from settings, or, in development, generated once and kept under DATA_DIR."""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

log = logging.getLogger(__name__)


class MissingKey(Exception):
    """A key the settings leave to DATA_DIR is not there, and this command may not make one:
    a key made there would open nothing the store already keeps."""


def _make_once(
    path: Path, make: Callable[[], bytes], what: str, create: bool, setting: str
) -> None:
    """`make` is called only when the key is missing: an RSA key takes a while to generate."""
    if path.exists():
        return
    if not create:
        raise MissingKey(
            f"no {what} at {path.resolve()}: set {setting} (or DATA_DIR) as the server has it"
        )
    # Another process may make it first: then use theirs.
    with contextlib.suppress(FileExistsError):
        _write_private(path, make())
        log.info("created a new %s at %s", what, path.resolve())


def _write_private(path: Path, content: bytes) -> None:
    """Creates the file readable by its owner only, and never overwrites one that exists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(content)


class KeySettingRefused(ValueError):
    """A key setting that cannot be used: refused at start-up, naming the setting."""


@dataclass(frozen=True)
class KeyKind:
    """One kind of signing key: how to make one, and what a given one must be."""

    setting: str  # the settings that give it: SETTING and SETTING_FILE
    dev_file: str  # under DATA_DIR, where it is made on first start when neither is set
    what: str  # in words, for the log line that says it was made
    generate: Callable[[], PrivateKeyTypes]
    fits: Callable[[PrivateKeyTypes], bool]
    wanted: str  # what `fits` asks, in words


# 2048 bits: what OpenID Connect relying parties expect of RS256 (and NIST SP 800-57 accepts
# through 2030); a 3072-bit key signs about four times slower (1.8 ms against 0.4 ms), on the
# path that will sign every ID token and client_credentials token. A longer key given in the
# settings is used as it is, and a rotation replaces the generated one when 2048 bits no longer do.
RSA_BITS = 2048

ED25519 = KeyKind(
    "JWT_PRIVATE_KEY",
    "signing-key.pem",
    "signing key",
    Ed25519PrivateKey.generate,
    lambda key: isinstance(key, Ed25519PrivateKey),
    "an Ed25519 private key",
)
RSA = KeyKind(
    "JWT_RSA_PRIVATE_KEY",
    "signing-key-rs256.pem",
    "RS256 signing key",
    lambda: rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS),
    lambda key: isinstance(key, rsa.RSAPrivateKey) and key.key_size >= 2048,
    "an RSA private key of at least 2048 bits",
)
P256 = KeyKind(
    "JWT_EC_PRIVATE_KEY",
    "signing-key-es256.pem",
    "ES256 signing key",
    lambda: ec.generate_private_key(ec.SECP256R1()),
    lambda key: isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1),
    "an EC private key on P-256",
)


def load_private_key(
    kind: KeyKind, pem: str | None, pem_file: str | None, dev_path: Path, create: bool = True
) -> PrivateKeyTypes:
    """The key given inline, else in a file; else the one kept under DATA_DIR, made there on
    first use if `create` (else MissingKey)."""
    setting = kind.setting if pem else f"{kind.setting}_FILE"
    if pem:
        data = pem.encode("ascii", errors="replace")
    elif pem_file:
        try:
            data = Path(pem_file).read_bytes()
        except OSError as error:
            raise KeySettingRefused(
                f"{setting}: cannot read {pem_file}: {error.strerror}"
            ) from None
    else:
        setting = str(dev_path)

        def generated() -> bytes:
            return kind.generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )

        _make_once(dev_path, generated, kind.what, create, f"{kind.setting}_FILE")
        data = dev_path.read_bytes()
    key = _parsed(data)
    if key is None or not kind.fits(key):
        raise KeySettingRefused(f"{setting} must hold {kind.wanted} (PEM, PKCS#8, unencrypted)")
    return key


@functools.lru_cache(maxsize=16)
def _parsed(data: bytes) -> PrivateKeyTypes | None:
    """The key a PEM holds, checked once per process: the checks of an RSA key take tens of
    milliseconds, and a process that builds the service again from the same settings (the
    tests do, hundreds of times) would repeat them for the same bytes."""
    try:
        return serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return None


def load_previous_keys(jwks: str | None, jwks_file: str | None) -> list[PublicKeyTypes]:
    """JWT_PREVIOUS_KEYS: the public keys that signed tokens still alive, as a JWKS (what
    /.well-known/jwks.json served before the rotation). They verify, and are published, never sign."""
    setting = "JWT_PREVIOUS_KEYS" if jwks else "JWT_PREVIOUS_KEYS_FILE"
    if jwks_file and not jwks:
        try:
            jwks = Path(jwks_file).read_text()
        except (OSError, UnicodeDecodeError) as error:
            raise KeySettingRefused(f"{setting}: cannot read {jwks_file}: {error}") from None
    if not jwks or not jwks.strip():
        return []
    try:
        listed = json.loads(jwks)["keys"]
        keys = [jwt.PyJWK(entry).key for entry in listed]
    except (ValueError, KeyError, TypeError, jwt.PyJWTError) as error:
        raise KeySettingRefused(
            f'{setting} must be a JWKS, {{"keys": [...]}}, of public keys: {error}'
        ) from None
    for key in keys:
        if isinstance(key, (Ed25519PrivateKey, rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
            raise KeySettingRefused(f"{setting} must hold public keys only, not private ones")
        if not (
            isinstance(key, Ed25519PublicKey)
            or (isinstance(key, rsa.RSAPublicKey) and key.key_size >= 2048)
            or (isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1))
        ):
            raise KeySettingRefused(
                f"{setting}: keys are Ed25519, RSA of at least 2048 bits, or EC on P-256"
            )
    return keys


def load_secret_key(encoded: str | None, dev_path: Path, create: bool = True) -> bytes:
    """The 256-bit key that seals secrets carried in events (SECRET_KEY, URL-safe base64).
    `create`: whether a missing key at `dev_path` may be made (else MissingKey)."""
    if not encoded:

        def random() -> bytes:
            return base64.urlsafe_b64encode(os.urandom(32))

        _make_once(dev_path, random, "secret key", create, "SECRET_KEY")
        encoded = dev_path.read_text().strip()
    return _secret(encoded, "SECRET_KEY")


def load_fallback_keys(listed: str) -> list[bytes]:
    """SECRET_KEY_FALLBACKS: the keys SECRET_KEY replaced, comma-separated."""
    return [_secret(k.strip(), "SECRET_KEY_FALLBACKS") for k in listed.split(",") if k.strip()]


def _secret(encoded: str, name: str) -> bytes:
    try:
        key = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except ValueError:
        key = b""
    if len(key) != 32:
        raise ValueError(f"{name} must hold 32-byte keys, URL-safe base64 encoded")
    return key
