"""Signing in with another identity provider: /api/auth/oidc/..., and one's own linked
identities at /api/users/me/identities."""

from __future__ import annotations

from typing import Annotated, Any

import anyio
from litestar import Controller, Request, Response, delete, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.response import Redirect
from litestar.status_codes import HTTP_200_OK, HTTP_204_NO_CONTENT

from application.factors.external_sign_in import (
    ExternalSignIn,
    IdentityView,
    ProviderView,
    RefusedAtCallback,
    with_query,
)
from application.factors.throttle import Throttle
from application.ports import Caller
from application.views import Client, MfaChallenge, TokenPair
from domain.errors import DomainError
from infrastructure import metrics
from interfaces.http.openapi import BEARER_ERRORS, BODY, problems
from interfaces.http.problems import code_of
from interfaces.http.schemas import (
    AuthorizationUrl,
    IdentityUnlinkRequest,
    OidcExchangeRequest,
    OidcLinkRequest,
)
from interfaces.http.security import BEARER
from interfaces.pages.guard import oidc_browser_cookie, oidc_browser_cookie_name
from interfaces.settings import Settings

# An app's S256 code challenge (RFC 7636, 4.2): BASE64URL(SHA256(verifier)), 43 characters.
CodeChallenge = Annotated[
    str | None, QueryParameter(min_length=43, max_length=43, pattern=r"^[A-Za-z0-9_-]+$(?!\n)")
]


def browser_cookie_name(settings: Settings) -> str:
    return oidc_browser_cookie_name(settings.public_url)


def browser_cookie(settings: Settings, secret: str) -> Cookie:
    return oidc_browser_cookie(settings.public_url, settings.oidc_state_ttl, secret)


class OidcController(Controller):
    path = "/api/auth/oidc"
    tags = ["auth"]

    @get("/providers", sync_to_thread=False, responses=problems(400, 503))
    def providers(self, external_sign_in: NamedDependency[ExternalSignIn]) -> list[ProviderView]:
        """The configured providers: one sign-in button each."""
        return external_sign_in.providers()

    @get(
        "/{provider:str}/start",
        status_code=302,
        responses=problems(400, 401, 404, 429, 502, 503),
    )
    async def start(
        self,
        request: Request[Any, Any, Any],
        provider: FromPath[str],
        redirect_uri: FromQuery[str],
        external_sign_in: NamedDependency[ExternalSignIn],
        throttle: NamedDependency[Throttle],
        client: NamedDependency[Client],
        settings: NamedDependency[Settings],
        code_challenge: CodeChallenge = None,
    ) -> Redirect:
        """302 to the provider, to sign in. (Linking is POST /{provider}/link: re-authenticated,
        with no password in a URL.) `code_challenge`: an app that will not hold this browser's
        cookie at the exchange (another origin) sends the S256 challenge of a verifier it keeps,
        and the verifier with the code."""
        throttle.check("passkey_options", client.ip)  # each start stores a state, unproven
        cookie = browser_cookie_name(settings)
        started = await anyio.to_thread.run_sync(
            lambda: external_sign_in.start(
                provider, redirect_uri, None, request.cookies.get(cookie), code_challenge
            )
        )
        return Redirect(
            started.authorization_url,
            status_code=302,
            cookies=[browser_cookie(settings, started.browser_secret)],
            headers={"Cache-Control": "no-store"},
        )

    @post(
        "/{provider:str}/link",
        status_code=HTTP_200_OK,
        dependencies={"claims": BEARER},
        security=[{"bearer": []}],
        responses=problems(*BODY, *BEARER_ERRORS, 403, 404, 423, 429, 502, 503),
    )
    async def link(
        self,
        request: Request[Any, Any, Any],
        provider: FromPath[str],
        claims: NamedDependency[Caller],
        data: JSONBody[OidcLinkRequest],
        external_sign_in: NamedDependency[ExternalSignIn],
        settings: NamedDependency[Settings],
    ) -> Response[AuthorizationUrl]:
        """Links another identity to the caller's account, once re-authenticated: answers where
        to send the browser, and sets the cookie that binds the flow to it (so the browser that
        follows the URL must be the one that made this request, or carry its cookie). The
        provider's answer comes back to `redirect_uri` with `?linked=<provider>`."""
        cookie = browser_cookie_name(settings)
        started = await anyio.to_thread.run_sync(
            lambda: external_sign_in.link(
                claims, data.proof(), provider, data.redirect_uri, request.cookies.get(cookie)
            )
        )
        return Response(
            AuthorizationUrl(started.authorization_url),
            cookies=[browser_cookie(settings, started.browser_secret)],
            headers={"Cache-Control": "no-store"},
        )

    @get(
        "/{provider:str}/callback",
        status_code=303,
        opt={"any_query": True},  # providers add their own (iss, scope, authuser, session_state)
        responses=problems(400, 401, 403, 409, 423, 502, 503),
    )
    async def callback(
        self,
        request: Request[Any, Any, Any],
        provider: FromPath[str],
        external_sign_in: NamedDependency[ExternalSignIn],
        settings: NamedDependency[Settings],
    ) -> Redirect:
        """The provider's redirect back: to the client's redirect URI with a one-time `code`
        (never a token in a URL), or `linked=<provider>` after a link."""
        query = request.query_params
        browser = request.cookies.get(browser_cookie_name(settings))
        try:
            target = await anyio.to_thread.run_sync(
                lambda: external_sign_in.callback(
                    provider, query.get("code"), query.get("state") or "", browser
                )
            )
        except RefusedAtCallback as refused:
            # The pages' own redirect URI: the sign-in page shows what went wrong. A person who
            # declined at the provider is told so, rather than "did not verify".
            declined = query.get("error") == "access_denied" and not query.get("code")
            code = "access_denied" if declined else code_of(refused.error)
            metrics.LOGINS.labels(outcome=code_of(refused.error)).inc()
            target = with_query(refused.redirect_uri, error=code)
        except DomainError as error:
            metrics.LOGINS.labels(outcome=code_of(error)).inc()
            raise
        return Redirect(target, status_code=303, headers={"Cache-Control": "no-store"})

    @post(
        "/exchange",
        sync_to_thread=True,
        status_code=HTTP_200_OK,
        responses=problems(*BODY, 400, 401, 423, 429),
    )
    def exchange(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[OidcExchangeRequest],
        external_sign_in: NamedDependency[ExternalSignIn],
        throttle: NamedDependency[Throttle],
        client: NamedDependency[Client],
        settings: NamedDependency[Settings],
    ) -> TokenPair | MfaChallenge:
        """The one-time code from the redirect: the same answer as a password login. Only
        for whoever started the sign-in: the browser that holds its cookie, or the app that
        sends the `code_verifier` of the challenge it gave to start; else 400, and the code is
        spent."""
        browser = request.cookies.get(browser_cookie_name(settings))
        try:
            throttle.check("login", client.ip)
            result = external_sign_in.exchange(data.code, client, browser, data.code_verifier)
        except DomainError as error:
            metrics.LOGINS.labels(outcome=code_of(error)).inc()
            raise
        outcome = "mfa_required" if isinstance(result, MfaChallenge) else "success"
        metrics.LOGINS.labels(outcome=outcome).inc()
        return result


class MyIdentitiesController(Controller):
    path = "/api/users/me/identities"
    tags = ["me"]
    dependencies = {"claims": BEARER}
    security = [{"bearer": []}]

    @get(sync_to_thread=True, responses=problems(*BEARER_ERRORS))
    def list_identities(
        self, claims: NamedDependency[Caller], external_sign_in: NamedDependency[ExternalSignIn]
    ) -> list[IdentityView]:
        return external_sign_in.identities(claims)

    @delete(
        "/{identity_id:str}",
        sync_to_thread=True,
        status_code=HTTP_204_NO_CONTENT,
        responses=problems(*BODY, *BEARER_ERRORS, 403, 404, 409, 423, 429),
    )
    def unlink(
        self,
        claims: NamedDependency[Caller],
        identity_id: FromPath[str],
        data: JSONBody[IdentityUnlinkRequest],
        external_sign_in: NamedDependency[ExternalSignIn],
    ) -> None:
        """Re-authenticated; refused (409 last_sign_in_method) when nothing else would let the
        person in."""
        external_sign_in.unlink(claims, identity_id, data.proof())
