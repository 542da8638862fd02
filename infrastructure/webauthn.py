"""The relying party's side of WebAuthn, by Duo's py_webauthn: options, and the verification of
attestations and assertions (CBOR, COSE and signatures are the library's, never ours)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    base64url_to_bytes,
    bytes_to_base64url,
    parse_authentication_credential_json,
    parse_client_data_json,
    parse_registration_credential_json,
)
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from application.ports import Assertion, Ceremony, CredentialRefused, NewCredential

# How long the browser gives the person (a hint): the challenge itself lives PASSKEY_CHALLENGE_TTL.
_TIMEOUT_MS = 300_000


@contextmanager
def _refused() -> Iterator[None]:
    """Whatever a client sent that the library cannot read or verify is a refusal, never a 500:
    the library raises its own exceptions, and base64/CBOR/struct errors from malformed input."""
    try:
        yield
    except (WebAuthnException, ValueError, TypeError, KeyError, IndexError, OverflowError) as e:
        raise CredentialRefused(str(e)) from e


def _descriptors(credential_ids: Sequence[str]) -> list[PublicKeyCredentialDescriptor]:
    return [PublicKeyCredentialDescriptor(id=base64url_to_bytes(cid)) for cid in credential_ids]


class PyWebAuthn:
    def __init__(self, rp_id: str, rp_name: str, origins: Sequence[str]) -> None:
        self._rp_id = rp_id
        self._rp_name = rp_name
        self._origins = list(origins)

    def creation_options(
        self, user_id: bytes, user_name: str, display_name: str, exclude: Sequence[str]
    ) -> Ceremony:
        options = generate_registration_options(
            rp_id=self._rp_id,
            rp_name=self._rp_name,
            user_id=user_id,
            user_name=user_name,
            user_display_name=display_name,
            timeout=_TIMEOUT_MS,
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.REQUIRED,
                user_verification=UserVerificationRequirement.PREFERRED,
            ),
            exclude_credentials=_descriptors(exclude),
        )
        return Ceremony(options.challenge, json.loads(options_to_json(options)))

    def request_options(self, allow: Sequence[str] | None, require_verification: bool) -> Ceremony:
        options = generate_authentication_options(
            rp_id=self._rp_id,
            timeout=_TIMEOUT_MS,
            allow_credentials=_descriptors(allow or []),
            user_verification=UserVerificationRequirement.REQUIRED
            if require_verification
            else UserVerificationRequirement.PREFERRED,
        )
        document = json.loads(options_to_json(options))
        if allow is None:
            document.pop("allowCredentials", None)  # discoverable: the authenticator offers
        return Ceremony(options.challenge, document)

    def registration_challenge(self, credential: dict[str, Any]) -> bytes:
        with _refused():
            parsed = parse_registration_credential_json(credential)
            return parse_client_data_json(parsed.response.client_data_json).challenge
        raise AssertionError("unreachable")  # pragma: no cover  (mypy: _refused re-raises)

    def read_assertion(self, credential: dict[str, Any]) -> Assertion:
        with _refused():
            parsed = parse_authentication_credential_json(credential)
            client_data = parse_client_data_json(parsed.response.client_data_json)
            return Assertion(
                credential_id=bytes_to_base64url(parsed.raw_id),
                user_handle=parsed.response.user_handle,
                challenge=client_data.challenge,
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def verify_registration(self, credential: dict[str, Any], challenge: bytes) -> NewCredential:
        with _refused():
            parsed = parse_registration_credential_json(credential)
            verified = verify_registration_response(
                credential=parsed,
                expected_challenge=challenge,
                expected_rp_id=self._rp_id,
                expected_origin=self._origins,
            )
            return NewCredential(
                credential_id=bytes_to_base64url(verified.credential_id),
                public_key=bytes_to_base64url(verified.credential_public_key),
                sign_count=verified.sign_count,
                transports=tuple(t.value for t in parsed.response.transports or []),
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def verify_assertion(
        self,
        credential: dict[str, Any],
        challenge: bytes,
        public_key: str,
        require_verification: bool,
    ) -> int:
        with _refused():
            verified = verify_authentication_response(
                credential=credential,
                expected_challenge=challenge,
                expected_rp_id=self._rp_id,
                expected_origin=self._origins,
                credential_public_key=base64url_to_bytes(public_key),
                # 0: the library never refuses on the counter; the Account decides, so that a
                # counter that went back is recorded (PasskeyCounterWentBack), not just refused.
                credential_current_sign_count=0,
                require_user_verification=require_verification,
            )
            return verified.new_sign_count
        raise AssertionError("unreachable")  # pragma: no cover
