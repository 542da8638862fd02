"""The OpenID Provider's protocol, spoken by Authlib's authorization server: it reads the token,
introspection and revocation requests, authenticates the client and shapes every answer and
error (RFC 6749, 7009, 7662). What is decided (which client, which scope, which audience, is
the token still good) is the use cases'; this module only connects the two, and
interfaces/http/oauth2.py connects it to Litestar."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

from authlib.common.urls import add_params_to_uri
from authlib.consts import default_json_headers
from authlib.oauth2 import AuthorizationServer, OAuth2Error
from authlib.oauth2.rfc6749 import (
    AccessDeniedError,
    ClientMixin,
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Payload,
    OAuth2Request,
    UnauthorizedClientError,
)
from authlib.oauth2.rfc6749.grants import (
    AuthorizationCodeGrant,
    ClientCredentialsGrant,
)
from authlib.oauth2.rfc6749.hooks import hooked
from authlib.oauth2.rfc6749.util import extract_basic_authorization, scope_to_list
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oidc.core import OpenIDCode
from authlib.oidc.core.util import create_half_hash

from application.clients.authorization_codes import AuthorizationCodes, CodeGrant
from application.clients.machine_tokens import MachineTokens
from application.clients.person_tokens import PersonTokens, acr_for, released
from application.clients.registry import Clients, ClientView
from application.sessions.lifecycle import AppSession, Sessions
from application.views import Client
from domain.client import redirect_uri_matches
from domain.errors import (
    AuthorizationCodeReused,
    ClientNotFound,
    DomainError,
    InvalidAuthorizationCode,
    InvalidClient,
    NotYourToken,
    ResourceNotAllowed,
    ScopeNotAllowed,
)

log = logging.getLogger(__name__)

AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
# A public client (an SPA, a native app) proves nothing at the token endpoint but its PKCE
# verifier, and may revoke its own tokens (RFC 7009, 2.1); it never introspects.
PUBLIC_ENDPOINTS = ("token", "revocation")
GRANT_TYPES = ["authorization_code", "refresh_token", "client_credentials"]
CODE_CHALLENGE_METHODS = ["S256"]  # RFC 9700, 2.1.1: plain shows the challenge to anyone


class InvalidTargetError(OAuth2Error):  # type: ignore[misc]
    """RFC 8707, 2: a resource the client may not have a token for."""

    error = "invalid_target"
    status_code = 400


class Form(OAuth2Payload):  # type: ignore[misc]
    """A form body as Litestar parsed it, every value of every field kept."""

    def __init__(self, fields: Sequence[tuple[str, str]]) -> None:
        self._datalist: defaultdict[str, list[str]] = defaultdict(list)
        for name, value in fields:
            self._datalist[name].append(value)
        self._data = {name: values[0] for name, values in self._datalist.items()}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


Awaited = Callable[[Coroutine[Any, Any, Any]], Any]


class FormRequest(OAuth2Request):  # type: ignore[misc]
    def __init__(
        self,
        uri: str,
        headers: Mapping[str, str],
        form: Form,
        introspected: Callable[[str], dict[str, Any]] | None = None,
        awaited: Awaited | None = None,
        origin: Client | None = None,
        method: str = "POST",
    ) -> None:
        super().__init__(method, uri, headers=headers)
        self.payload = form
        # What introspection answers for a token (the adapter reads the revocation store).
        self.introspected = introspected
        # Runs an async use case on the request's own loop (Authlib runs in a thread).
        self.awaited = awaited
        self.origin = origin or Client()  # where the request came from (the trail)
        self.failed_authentication = False  # a wrong secret: the throttle counts it

    @property
    def args(self) -> dict[str, str]:
        data: dict[str, str] = self.payload.data
        return data if self.method == "GET" else {}

    @property
    def form(self) -> dict[str, str]:
        data: dict[str, str] = self.payload.data
        return data if self.method == "POST" else {}


@dataclass(frozen=True)
class SignedIn:
    """The person an authorization is granted by: the account, its browser session, and when
    it last proved who it is (OIDC Core's auth_time, unix seconds)."""

    account_id: UUID
    session_id: UUID
    auth_time: float
    amr: tuple[str, ...] = ()  # how that sign-in was proven (RFC 8176)


class RegisteredClient(ClientMixin):  # type: ignore[misc]
    """A client as Authlib asks about it; it has already proved its secret."""

    def __init__(self, view: ClientView) -> None:
        self.view = view

    def get_client_id(self) -> str:
        return self.view.client_id

    def get_default_redirect_uri(self) -> None:
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        """Of the scopes asked for, those registered for the client (RFC 6749, 3.3 lets the
        server leave out the others; the token answer names what was granted)."""
        asked = scope_to_list(scope) or []
        return " ".join(dict.fromkeys(s for s in asked if s in self.view.scopes))

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri_matches(self.view.redirect_uris, redirect_uri)

    def check_client_secret(self, client_secret: str) -> bool:
        return False  # never asked: the secret is checked once, by Clients.authenticate

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.view.public:
            return method == "none" and endpoint in PUBLIC_ENDPOINTS
        return method in AUTH_METHODS

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self.view.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.view.grant_types


class AccessToken:
    """A token presented to introspection or revocation, as Authlib's endpoints hold it."""

    def __init__(self, value: str) -> None:
        self.value = value


class MachineCredentials(ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS

    def validate_token_request(self) -> None:
        client = self.authenticate_token_endpoint_client()
        if not client.check_grant_type(self.GRANT_TYPE):
            raise UnauthorizedClientError(
                description="The client is not registered for client_credentials."
            )
        self.request.client = client
        server: TesseraAuthorizationServer = self.server
        try:
            scope = server.tokens.scope_for(client.view, scope_to_list(self.request.payload.scope))
        except ScopeNotAllowed as refused:
            raise InvalidScopeError(description=f"Not a scope of this client: {refused}") from None
        resources = self.request.payload.datalist.get("resource", [])
        try:
            audience = server.tokens.audience_for(client.view, resources)
        except ResourceNotAllowed:
            raise InvalidTargetError(
                description="Ask for one resource registered for this client."
            ) from None
        self.request.scope = " ".join(scope)
        self.request.audience = audience

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        server: TesseraAuthorizationServer = self.server
        issued = server.tokens.issue(
            self.request.client.view, self.request.scope.split(), self.request.audience
        )
        token = {
            "access_token": issued.access_token,
            "token_type": "Bearer",
            "expires_in": issued.expires_in,
        }
        if issued.scope:
            token["scope"] = issued.scope
        return 200, token, self.TOKEN_RESPONSE_HEADER


class IssuedCode:
    """A taken code as Authlib's grant and extensions ask about it."""

    def __init__(self, grant: CodeGrant) -> None:
        self.grant = grant
        self.code_challenge = grant.code_challenge
        self.code_challenge_method = "S256" if grant.code_challenge else None

    def get_redirect_uri(self) -> str:
        return self.grant.redirect_uri

    def get_scope(self) -> str:
        return " ".join(self.grant.scopes)

    def get_nonce(self) -> str | None:
        return self.grant.nonce

    def get_auth_time(self) -> int:
        return int(self.grant.auth_time)

    def get_acr(self) -> str | None:
        return self.grant.acr or acr_for(self.grant.amr)

    def get_amr(self) -> list[str] | None:
        return list(self.grant.amr) or None


class S256Challenge(CodeChallenge):  # type: ignore[misc]
    """PKCE with S256 only, required of public clients at the authorization request already
    (RFC 9700, 2.1.1), so no code is ever issued to one without it."""

    SUPPORTED_CODE_CHALLENGE_METHOD = CODE_CHALLENGE_METHODS

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        challenge, method = data.get("code_challenge"), data.get("code_challenge_method")
        if challenge and method != "S256":
            raise InvalidRequestError("Use code_challenge_method=S256.")
        if not challenge and grant.request.client.view.public:
            raise InvalidRequestError("A public client must use PKCE (code_challenge, S256).")
        super().validate_code_challenge(grant, redirect_uri)


class IdToken(OpenIDCode):  # type: ignore[misc]
    """The ID token, signed by tessera's keys in the client's algorithm (RS256 by default)."""

    def exists_nonce(self, nonce: str, request: Any) -> bool:
        return False  # the nonce is the client's to check in the ID token (OIDC Core 3.1.3.7)

    def process_token(self, grant: Any, response: Any) -> Any:
        _, token, _ = response
        if "openid" not in (scope_to_list(token.get("scope")) or []):
            return token
        server: TesseraAuthorizationServer = grant.server
        request = grant.request
        code: IssuedCode = request.authorization_code
        app: AppSession = request.app_session
        claims: dict[str, Any] = {**self.get_authorization_code_claims(code)}
        claims["sid"] = str(code.grant.browser_session_id)
        # From the exchange's own read of the account, in this thread: no hand-off to the
        # event loop and back (it waits its turn behind every request the loop is serving).
        if app.person is not None:
            claims.update(released(app.account_id, app.person, app.scopes))
        else:
            claims.update(request.awaited(server.person.person_claims(app.account_id, app.scopes)))
        token["id_token"] = server.person.id_token(
            request.client.view, app, claims, _half_hash, token["access_token"]
        )
        return token


def _half_hash(value: str, algorithm: str) -> str | None:
    digest = create_half_hash(value, algorithm)
    return None if digest is None else digest.decode("ascii")


class PersonCode(AuthorizationCodeGrant):  # type: ignore[misc]
    """The authorization code grant: a person's browser gets the code, the app exchanges it
    for tokens of an app session of its own."""

    TOKEN_ENDPOINT_AUTH_METHODS = [*AUTH_METHODS, "none"]

    def validate_authorization_request(self) -> str:
        redirect_uri: str = super().validate_authorization_request()
        server: TesseraAuthorizationServer = self.server
        try:
            resources = self.request.payload.datalist.get("resource", [])
            self.request.audience = server.person.audience_for(self.client.view, resources)
        except ResourceNotAllowed:
            raise InvalidTargetError(
                description="Ask for one resource registered for this client.",
                redirect_uri=redirect_uri,
            ) from None
        return redirect_uri

    def create_authorization_response(
        self, redirect_uri: str, grant_user: SignedIn | None
    ) -> tuple[int, str, list[tuple[str, str]]]:
        if grant_user is None:
            raise AccessDeniedError(redirect_uri=redirect_uri)
        server: TesseraAuthorizationServer = self.server
        data = self.request.payload.data
        code = server.codes.issue(
            CodeGrant(
                client_id=self.client.view.client_id,
                redirect_uri=redirect_uri,
                scopes=tuple(scope_to_list(self.request.scope) or ()),
                account_id=grant_user.account_id,
                browser_session_id=grant_user.session_id,
                auth_time=grant_user.auth_time,
                amr=grant_user.amr,
                nonce=data.get("nonce"),
                code_challenge=data.get("code_challenge"),
                resource=self.request.audience,
            )
        )
        params = [("code", code)]
        if self.request.payload.state:
            params.append(("state", self.request.payload.state))
        params.append(("iss", server.issuer))  # RFC 9207
        return 302, "", [("Location", add_params_to_uri(redirect_uri, params))]

    def save_authorization_code(self, code: str, request: Any) -> None:
        raise NotImplementedError  # codes are issued by create_authorization_response

    def query_authorization_code(self, code: str, client: RegisteredClient) -> IssuedCode | None:
        server: TesseraAuthorizationServer = self.server
        # Named now, so a second use racing this one finds the session to end.
        self.request.app_session_id = uuid4()
        try:
            grant = server.codes.take(code, client.view.client_id, self.request.app_session_id)
        except AuthorizationCodeReused as reused:
            log.warning("an authorization code was used twice: its app session is ended")
            server.sessions.end_spent_code_session(reused.session_id)
            return None
        except InvalidAuthorizationCode:
            return None
        return IssuedCode(grant)

    def delete_authorization_code(self, authorization_code: IssuedCode) -> None:
        pass  # taken already, atomically, by query_authorization_code

    def authenticate_user(self, authorization_code: IssuedCode) -> UUID:
        return authorization_code.grant.account_id

    @hooked  # type: ignore[untyped-decorator]
    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        server: TesseraAuthorizationServer = self.server
        code: IssuedCode = self.request.authorization_code
        grant = code.grant
        view = self.client.view
        try:
            app = server.sessions.start_app(
                grant.account_id,
                view.client_id,
                grant.browser_session_id,
                self.request.origin,
                self.request.app_session_id,
                grant.scopes,
                grant.resource or server.person.userinfo_audience,
            )
        except DomainError:
            raise InvalidGrantError("The person behind this code can no longer sign in.") from None
        self.request.app_session = app
        return 200, _token_answer(server, view, app), self.TOKEN_RESPONSE_HEADER


def _token_answer(
    server: TesseraAuthorizationServer, view: ClientView, app: AppSession
) -> dict[str, Any]:
    issued = server.person.access_token(app)
    token: dict[str, Any] = {
        "access_token": issued.access_token,
        "token_type": "Bearer",
        "expires_in": issued.expires_in,
        "scope": issued.scope,
    }
    if "refresh_token" in view.grant_types:
        token["refresh_token"] = app.refresh_token
    return token


class PersonRefresh(ClientCredentialsGrant):  # type: ignore[misc]
    """The refresh_token grant (RFC 6749, 6): one turn of the app session's chain, by the same
    reuse rule as tessera's own sessions. Authlib's refresh grant assumes stored tokens; this
    takes only its client authentication and error shapes."""

    GRANT_TYPE = "refresh_token"
    TOKEN_ENDPOINT_AUTH_METHODS = [*AUTH_METHODS, "none"]

    def validate_token_request(self) -> None:
        client = self.authenticate_token_endpoint_client()
        if not client.check_grant_type(self.GRANT_TYPE):
            raise UnauthorizedClientError(description="The client has no refresh_token grant.")
        self.request.client = client
        refresh_token = self.request.form.get("refresh_token")
        if not refresh_token or len(refresh_token) > 200:
            raise InvalidRequestError("Missing 'refresh_token' in request.")
        asked = scope_to_list(self.request.payload.scope) or []
        server: TesseraAuthorizationServer = self.server
        try:
            app = self.request.awaited(
                server.sessions.rotate_app(refresh_token, client.view.client_id, asked)
            )
        except ScopeNotAllowed:
            # RFC 6749, 6: never wider than the original grant.
            raise InvalidScopeError(
                description="Ask for the scopes first granted, or fewer."
            ) from None
        except DomainError:
            raise InvalidGrantError("The refresh token is invalid, expired or spent.") from None
        self.request.app_session = app

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        server: TesseraAuthorizationServer = self.server
        answer = _token_answer(server, self.request.client.view, self.request.app_session)
        return 200, answer, self.TOKEN_RESPONSE_HEADER


class Introspection(IntrospectionEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = AUTH_METHODS
    SUPPORTED_TOKEN_TYPES = ("access_token", "refresh_token")

    def query_token(self, token_string: str, token_type_hint: str | None) -> AccessToken:
        return AccessToken(token_string)

    def check_permission(self, token: AccessToken, client: RegisteredClient, request: Any) -> bool:
        # Any registered client may ask (RFC 7662, 2.1): an API is a client of its own, and
        # holding the token is what lets it ask. Only the answer's content is the token's.
        return True

    def create_endpoint_response(
        self, request: FormRequest
    ) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        client = self.authenticate_endpoint_client(request)
        token = self.authenticate_token(request, client)
        if token is None or request.introspected is None:
            return 200, {"active": False}, [*default_json_headers, ("Cache-Control", "no-store")]
        answer = request.introspected(token.value)
        return 200, answer, [*default_json_headers, ("Cache-Control", "no-store")]


class Revocation(RevocationEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = [*AUTH_METHODS, "none"]

    def query_token(self, token_string: str, token_type_hint: str | None) -> AccessToken:
        return AccessToken(token_string)

    def authenticate_token(self, request: FormRequest, client: RegisteredClient) -> AccessToken:
        self.check_params(request, client)
        return AccessToken(request.form["token"])

    def revoke_token(self, token: AccessToken, request: FormRequest) -> None:
        server: TesseraAuthorizationServer = self.server
        view = request.client.view
        # A person's token (refresh or access) ends its whole app session (RFC 7009, 2.1:
        # revoking either may revoke the grant).
        session_id = server.sessions.app_session_of(token.value, view.client_id)
        if session_id is None and request.awaited is not None:
            try:
                claims = request.awaited(server.person.verified(token.value))
            except DomainError:
                claims = None
            if claims is not None and claims.get("client_id") != view.client_id:
                raise InvalidRequestError(description="The token was not issued to this client.")
            session_id = None if claims is None else UUID(str(claims["sid"]))
        if session_id is not None:
            server.sessions.end_app_session(session_id, "revoked_by_client")
            return
        try:
            server.tokens.revoke(token.value, request.client.view)
        except NotYourToken:
            # RFC 7009, 2.1: a token of another client is refused, and nothing changes.
            raise InvalidRequestError(
                description="The token was not issued to this client."
            ) from None


class TesseraAuthorizationServer(AuthorizationServer):  # type: ignore[misc]
    """Authlib's server over tessera's clients and machine tokens. It keeps no state of a
    request: one serves every request of the process."""

    def __init__(
        self,
        clients: Clients,
        tokens: MachineTokens,
        person: PersonTokens,
        codes: AuthorizationCodes,
        sessions: Sessions,
        issuer: str,
    ) -> None:
        super().__init__(scopes_supported=None)
        self.clients = clients
        self.tokens = tokens
        self.person = person
        self.codes = codes
        self.sessions = sessions
        self.issuer = issuer
        self.register_grant(MachineCredentials)
        self.register_grant(PersonCode, [S256Challenge(required=True), IdToken()])
        self.register_grant(PersonRefresh)
        self.register_endpoint(Introspection)
        self.register_endpoint(Revocation)
        self.register_client_auth_method("client_secret_basic", self._basic)
        self.register_client_auth_method("client_secret_post", self._post)

    def query_client(self, client_id: str) -> RegisteredClient | None:
        # As this process read it at most CLIENT_CACHE_SECONDS ago, like an authenticated
        # client: an authorization request asks for its client twice, a public client's
        # exchange once, and neither should read the event store each time.
        try:
            return RegisteredClient(self.clients.known(client_id))
        except ClientNotFound:
            return None

    def _basic(self, query_client: Any, request: FormRequest) -> RegisteredClient | None:
        client_id, secret = extract_basic_authorization(request.headers)
        return self._authenticated(client_id, secret, request)

    def _post(self, query_client: Any, request: FormRequest) -> RegisteredClient | None:
        if "client_id" not in request.form:
            return None
        return self._authenticated(
            request.form.get("client_id"), request.form.get("client_secret"), request
        )

    def _authenticated(
        self, client_id: str | None, secret: str | None, request: FormRequest
    ) -> RegisteredClient | None:
        if not client_id or not secret:
            return None
        try:
            view = self.clients.authenticate(client_id, secret)
        except InvalidClient:
            request.failed_authentication = True
            raise InvalidClientError(
                status_code=401, description="The client could not be authenticated."
            ) from None
        return RegisteredClient(view)

    def save_token(self, token: dict[str, Any], request: FormRequest) -> None:
        pass  # nothing to keep: the token is a signed JWT, revoked by its jti

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        pass

    def create_oauth2_request(self, request: FormRequest) -> FormRequest:
        return request

    def handle_response(
        self, status: int, body: Any, headers: list[tuple[str, str]]
    ) -> tuple[int, Any, list[tuple[str, str]]]:
        return status, body, headers
