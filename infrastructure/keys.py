"""Key material from settings, or, in development, generated once and kept under DATA_DIR."""

from __future__ import annotations

import base64
import contextlib
import logging
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

log = logging.getLogger(__name__)


class MissingKey(Exception):
    """A key the settings leave to DATA_DIR is not there, and this command may not make one:
    a key made there would open nothing the store already keeps."""


def _make_once(path: Path, content: bytes, what: str, create: bool, setting: str) -> None:
    if path.exists():
        return
    if not create:
        raise MissingKey(
            f"no {what} at {path.resolve()}: set {setting} (or DATA_DIR) as the server has it"
        )
    # Another process may make it first: then use theirs.
    with contextlib.suppress(FileExistsError):
        _write_private(path, content)
        log.info("created a new %s at %s", what, path.resolve())


def _write_private(path: Path, content: bytes) -> None:
    """Creates the file readable by its owner only, and never overwrites one that exists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(content)


def load_signing_key(
    pem: str | None, pem_file: str | None, dev_path: Path, create: bool = True
) -> Ed25519PrivateKey:
    """`create`: whether a missing key at `dev_path` may be made (else MissingKey)."""
    if pem:
        data = pem.encode("ascii")
    elif pem_file:
        data = Path(pem_file).read_bytes()
    else:
        generated = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _make_once(dev_path, generated, "signing key", create, "JWT_PRIVATE_KEY_FILE")
        data = dev_path.read_bytes()
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("the signing key must be an Ed25519 private key (PEM, PKCS#8)")
    return key


def load_secret_key(encoded: str | None, dev_path: Path, create: bool = True) -> bytes:
    """The 256-bit key that seals secrets carried in events (SECRET_KEY, URL-safe base64).
    `create`: whether a missing key at `dev_path` may be made (else MissingKey)."""
    if not encoded:
        random = base64.urlsafe_b64encode(os.urandom(32))
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
