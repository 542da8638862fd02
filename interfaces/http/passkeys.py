"""Passkeys (WebAuthn): /api/users/me/passkeys for one's own, /api/auth/passkey to sign in."""

from __future__ import annotations

from typing import Any

from litestar import Controller, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from application.factors.passkeys import Passkeys, PasskeyView, SignInOptions
from application.factors.reauthentication import Reauthentication
from application.factors.throttle import Throttle
from application.ports import Caller
from application.views import Client, TokenPair
from domain.errors import DomainError
from infrastructure import metrics
from interfaces.http.openapi import BEARER_ERRORS, BODY, problems
from interfaces.http.problems import code_of
from interfaces.http.schemas import (
    PasskeyAdditionRequest,
    PasskeyOptionsRequest,
    PasskeyRegistrationRequest,
    PasskeyRemovalRequest,
    PasskeyRenameRequest,
    PasskeySignInRequest,
)
from interfaces.http.security import BEARER


class MyPasskeysController(Controller):
    path = "/api/users/me/passkeys"
    tags = ["me"]
    dependencies = {"claims": BEARER}
    security = [{"bearer": []}]

    @post(
        "/options",
        sync_to_thread=True,
        status_code=HTTP_200_OK,
        responses=problems(*BODY, *BEARER_ERRORS, 403, 423, 429),
    )
    def options(
        self,
        claims: NamedDependency[Caller],
        data: JSONBody[PasskeyAdditionRequest],
        passkeys: NamedDependency[Passkeys],
    ) -> dict[str, Any]:
        """PublicKeyCredentialCreationOptions (WebAuthn Level 3 JSON) for a new passkey, once
        the caller is re-authenticated; its challenge is good once, for this account, for
        PASSKEY_CHALLENGE_TTL."""
        return passkeys.registration_options(claims, data.proof())

    @post(
        sync_to_thread=True,
        status_code=HTTP_201_CREATED,
        responses=problems(*BODY, *BEARER_ERRORS),
    )
    def register(
        self,
        claims: NamedDependency[Caller],
        data: JSONBody[PasskeyRegistrationRequest],
        passkeys: NamedDependency[Passkeys],
    ) -> PasskeyView:
        return passkeys.register(claims, data.credential, data.name)

    @get(sync_to_thread=True, responses=problems(*BEARER_ERRORS))
    def list_passkeys(
        self, claims: NamedDependency[Caller], passkeys: NamedDependency[Passkeys]
    ) -> list[PasskeyView]:
        return passkeys.list(claims)

    @patch(
        "/{passkey_id:str}",
        sync_to_thread=True,
        status_code=HTTP_200_OK,
        responses=problems(*BODY, *BEARER_ERRORS),
    )
    def rename(
        self,
        claims: NamedDependency[Caller],
        passkey_id: FromPath[str],
        data: JSONBody[PasskeyRenameRequest],
        passkeys: NamedDependency[Passkeys],
    ) -> PasskeyView:
        return passkeys.rename(claims, passkey_id, data.name)

    @delete(
        "/{passkey_id:str}",
        sync_to_thread=True,
        status_code=HTTP_204_NO_CONTENT,
        responses=problems(*BODY, *BEARER_ERRORS, 403, 423, 429),
    )
    def remove(
        self,
        claims: NamedDependency[Caller],
        passkey_id: FromPath[str],
        data: JSONBody[PasskeyRemovalRequest],
        passkeys: NamedDependency[Passkeys],
    ) -> None:
        passkeys.remove(claims, passkey_id, data.proof())


class PasskeySignInController(Controller):
    path = "/api/auth/passkey"
    tags = ["auth"]

    @post(
        "/options",
        sync_to_thread=True,
        status_code=HTTP_200_OK,
        responses=problems(*BODY, 401, 429),
    )
    def options(
        self,
        data: JSONBody[PasskeyOptionsRequest],
        passkeys: NamedDependency[Passkeys],
        throttle: NamedDependency[Throttle],
        client: NamedDependency[Client],
    ) -> SignInOptions:
        """Without `mfa_token`: a discoverable sign-in (user verification required). With the
        token a password login answered: the second factor, for that account's passkeys.
        Rate-limited per client IP: each answer stores a challenge, and nothing is asked first."""
        throttle.check("passkey_options", client.ip)
        return passkeys.sign_in_options(data.mfa_token)

    @post(
        sync_to_thread=True,
        status_code=HTTP_200_OK,
        responses=problems(*BODY, 401, 403, 423, 429),
    )
    def sign_in(
        self,
        data: JSONBody[PasskeySignInRequest],
        passkeys: NamedDependency[Passkeys],
        throttle: NamedDependency[Throttle],
        client: NamedDependency[Client],
    ) -> TokenPair:
        try:
            throttle.check("login", client.ip)
            tokens = passkeys.sign_in(data.credential, client, data.mfa_token)
        except DomainError as error:
            metrics.LOGINS.labels(outcome=code_of(error)).inc()
            raise
        metrics.LOGINS.labels(outcome="success").inc()
        return tokens


class ReauthenticationController(Controller):
    path = "/api/users/me/reauthentication"
    tags = ["me"]
    dependencies = {"claims": BEARER}
    security = [{"bearer": []}]

    @post(
        "/passkey",
        sync_to_thread=True,
        status_code=HTTP_200_OK,
        responses=problems(400, *BEARER_ERRORS, 404, 429),
    )
    def passkey_options(
        self,
        claims: NamedDependency[Caller],
        reauthentication: NamedDependency[Reauthentication],
        throttle: NamedDependency[Throttle],
        client: NamedDependency[Client],
    ) -> SignInOptions:
        """PublicKeyCredentialRequestOptions for one of the caller's passkeys (user verification
        required): the assertion, as `passkey`, re-authenticates a change in place of the
        password and code. 404 passkey_not_found when the account has none."""
        throttle.check("passkey_options", client.ip)  # each answer stores a challenge
        return SignInOptions(reauthentication.passkey_options(claims))
