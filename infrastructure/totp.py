"""TOTP (RFC 6238) through pyotp: 6 digits, 30-second steps, one step of drift either way."""

from __future__ import annotations

import hmac
from datetime import datetime

import pyotp

_STEP_SECONDS = 30
_WINDOW = 1  # RFC 6238 5.2: allow one step of clock drift, no more


class Totp:
    def new_secret(self) -> str:
        return pyotp.random_base32(length=32)  # 160 bits, RFC 4226's recommended length

    def provisioning_uri(self, secret: str, account_name: str, issuer: str) -> str:
        return pyotp.TOTP(secret, interval=_STEP_SECONDS).provisioning_uri(
            name=account_name, issuer_name=issuer
        )

    def accepted_step(self, secret: str, code: str, at: datetime) -> int | None:
        if not (len(code) == 6 and code.isascii() and code.isdigit()):
            return None
        totp = pyotp.TOTP(secret, interval=_STEP_SECONDS)
        now_step = int(at.timestamp()) // _STEP_SECONDS
        for step in range(now_step - _WINDOW, now_step + _WINDOW + 1):
            if hmac.compare_digest(totp.at(step * _STEP_SECONDS), code):
                return step
        return None
