"""A software WebAuthn authenticator and browser, for tests only: it answers the options the
service gives with what `PublicKeyCredential.toJSON()` would give (ES256, attestation "none").

soft-webauthn (PyPI) was tried first: it never sets the user-verified flag (a discoverable
sign-in requires it), holds one credential, and answers bytes rather than toJSON()'s base64url;
so this one is written with cryptography and cbor2, and can be told to misbehave.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

UP, UV, AT = 0x01, 0x04, 0x40


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Credential:
    credential_id: bytes
    key: ec.EllipticCurvePrivateKey
    user_handle: bytes
    rp_id: str
    sign_count: int = 0

    @property
    def id(self) -> str:
        return b64url(self.credential_id)


@dataclass
class Authenticator:
    origin: str
    credentials: list[Credential] = field(default_factory=list)

    def create(
        self, options: dict[str, Any], origin: str | None = None, rp_id: str | None = None
    ) -> dict[str, Any]:
        """navigator.credentials.create() with these creation options, as toJSON()."""
        assert {"type": "public-key", "alg": -7} in options["pubKeyCredParams"]
        rp = rp_id or options["rp"]["id"]
        credential = Credential(
            os.urandom(32),
            ec.generate_private_key(ec.SECP256R1()),
            unb64url(options["user"]["id"]),
            rp,
        )
        self.credentials.append(credential)
        numbers = credential.key.public_key().public_numbers()
        cose_key = cbor2.dumps(
            {
                1: 2,
                3: -7,
                -1: 1,
                -2: numbers.x.to_bytes(32, "big"),
                -3: numbers.y.to_bytes(32, "big"),
            }
        )
        auth_data = (
            hashlib.sha256(rp.encode()).digest()
            + bytes([UP | UV | AT])
            + struct.pack(">I", 0)
            + bytes(16)
            + struct.pack(">H", len(credential.credential_id))
            + credential.credential_id
            + cose_key
        )
        client_data = self._client_data("webauthn.create", options["challenge"], origin)
        return {
            "id": credential.id,
            "rawId": credential.id,
            "type": "public-key",
            "authenticatorAttachment": "platform",
            "clientExtensionResults": {},
            "response": {
                "clientDataJSON": b64url(client_data),
                "attestationObject": b64url(
                    cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
                ),
                "transports": ["internal", "hybrid"],
            },
        }

    def get(
        self,
        options: dict[str, Any],
        credential: Credential | None = None,
        origin: str | None = None,
        rp_id: str | None = None,
        sign_count: int | None = None,
        verified: bool = True,
    ) -> dict[str, Any]:
        """navigator.credentials.get() with these request options, as toJSON()."""
        allowed = {item["id"] for item in options.get("allowCredentials", [])}
        credential = credential or next(
            c for c in self.credentials if not allowed or c.id in allowed
        )
        credential.sign_count = credential.sign_count + 1 if sign_count is None else sign_count
        rp = rp_id or options.get("rpId") or credential.rp_id
        auth_data = (
            hashlib.sha256(rp.encode()).digest()
            + bytes([UP | (UV if verified else 0)])
            + struct.pack(">I", credential.sign_count)
        )
        client_data = self._client_data("webauthn.get", options["challenge"], origin)
        signature = credential.key.sign(
            auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256())
        )
        return {
            "id": credential.id,
            "rawId": credential.id,
            "type": "public-key",
            "authenticatorAttachment": "platform",
            "clientExtensionResults": {},
            "response": {
                "clientDataJSON": b64url(client_data),
                "authenticatorData": b64url(auth_data),
                "signature": b64url(signature),
                "userHandle": b64url(credential.user_handle),
            },
        }

    def _client_data(self, kind: str, challenge: str, origin: str | None) -> bytes:
        return json.dumps(
            {
                "type": kind,
                "challenge": challenge,
                "origin": origin or self.origin,
                "crossOrigin": False,
            }
        ).encode()


def tampered_signature(answer: dict[str, Any]) -> dict[str, Any]:
    signature = bytearray(unb64url(answer["response"]["signature"]))
    signature[-1] ^= 0x01
    return {**answer, "response": {**answer["response"], "signature": b64url(bytes(signature))}}


def tampered_client_data(answer: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """The clientDataJSON changed after signing (its challenge kept, so it finds its ceremony)."""
    client_data = json.loads(unb64url(answer["response"]["clientDataJSON"]))
    client_data.update(changes or {"crossOrigin": True})
    response = {**answer["response"], "clientDataJSON": b64url(json.dumps(client_data).encode())}
    return {**answer, "response": response}
