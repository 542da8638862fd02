"""The OpenID Provider's protocol, spoken by Authlib's authorization server: it reads the token,
introspection and revocation requests, authenticates the client and shapes every answer and
error (RFC 6749, 7009, 7662). What is decided (which client, which scope, which audience, is
the token still good) is the use cases'; this module only connects the two, and
interfaces/http/oauth2.py connects it to Litestar."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from authlib.consts import default_json_headers
from authlib.oauth2 import AuthorizationServer, OAuth2Error
from authlib.oauth2.rfc6749 import (
    ClientMixin,
    InvalidClientError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Payload,
    OAuth2Request,
    UnauthorizedClientError,
)
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant
from authlib.oauth2.rfc6749.util import extract_basic_authorization, scope_to_list
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint

from application.clients.machine_tokens import MachineTokens
from application.clients.registry import Clients, ClientView
from domain.errors import (
    ClientNotFound,
    InvalidClient,
    NotYourToken,
    ResourceNotAllowed,
    ScopeNotAllowed,
)

log = logging.getLogger(__name__)

AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
GRANT_TYPES = ["client_credentials"]  # authorization_code and refresh_token come next


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


class FormRequest(OAuth2Request):  # type: ignore[misc]
    def __init__(
        self,
        uri: str,
        headers: Mapping[str, str],
        form: Form,
        introspected: Callable[[str], dict[str, Any]] | None = None,
    ) -> None:
        super().__init__("POST", uri, headers=headers)
        self.payload = form
        # What introspection answers for a token (the adapter reads the revocation store).
        self.introspected = introspected
        self.failed_authentication = False  # a wrong secret: the throttle counts it

    @property
    def args(self) -> dict[str, str]:
        return {}

    @property
    def form(self) -> dict[str, str]:
        data: dict[str, str] = self.payload.data
        return data


class RegisteredClient(ClientMixin):  # type: ignore[misc]
    """A client as Authlib asks about it; it has already proved its secret."""

    def __init__(self, view: ClientView) -> None:
        self.view = view

    def get_client_id(self) -> str:
        return self.view.client_id

    def get_default_redirect_uri(self) -> None:
        return None

    def get_allowed_scope(self, scope: str) -> str:
        return scope

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        return False  # never asked: the secret is checked once, by Clients.authenticate

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in AUTH_METHODS and not self.view.public

    def check_response_type(self, response_type: str) -> bool:
        return False

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
    CLIENT_AUTH_METHODS = AUTH_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> AccessToken:
        return AccessToken(token_string)

    def authenticate_token(self, request: FormRequest, client: RegisteredClient) -> AccessToken:
        self.check_params(request, client)
        return AccessToken(request.form["token"])

    def revoke_token(self, token: AccessToken, request: FormRequest) -> None:
        server: TesseraAuthorizationServer = self.server
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

    def __init__(self, clients: Clients, tokens: MachineTokens) -> None:
        super().__init__(scopes_supported=None)
        self.clients = clients
        self.tokens = tokens
        self.register_grant(MachineCredentials)
        self.register_endpoint(Introspection)
        self.register_endpoint(Revocation)
        self.register_client_auth_method("client_secret_basic", self._basic)
        self.register_client_auth_method("client_secret_post", self._post)

    def query_client(self, client_id: str) -> RegisteredClient | None:
        try:
            return RegisteredClient(self.clients.client(client_id))
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
