"""RP-Initiated Logout 1.0: an app asks that the person be signed out here too, and sent back.

What the app sends is only believed as far as it is proven: the `id_token_hint` must be an ID
token we signed (with any of our algorithms and keys; expired is fine, it names a past sign-in)
for a live client, and the `post_logout_redirect_uri` one registered for that client exactly.
The interface decides from this whether to sign the browser out at once (a valid hint naming
this browser's session) or to ask the person first, and where it may send them after."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit
from uuid import UUID

from application.clients.person_tokens import ID_TOKEN_TYPE
from application.clients.registry import Clients, ClientView
from application.ports import ClaimSigner
from domain.errors import ClientNotFound


@dataclass(frozen=True)
class Hint:
    """What a valid id_token_hint names: the person and the browser session they signed in
    with (its `sid`)."""

    account_id: UUID
    browser_session_id: UUID


@dataclass(frozen=True)
class LogoutRequest:
    client: ClientView | None  # the app that asked, when it is known and still registered
    hint: Hint | None  # None: no hint, or one that did not verify
    # Where to send the person afterwards, `state` included: None unless the URI asked for is
    # registered for that app exactly (an unregistered one is never redirected to).
    return_to: str | None

    def names(self, browser_session_id: UUID) -> bool:
        """Whether the hint is of this browser session: then no confirmation is asked."""
        return self.hint is not None and self.hint.browser_session_id == browser_session_id


class Logout:
    def __init__(self, clients: Clients, signer: ClaimSigner, issuer: str) -> None:
        self._clients = clients
        self._signer = signer
        self._issuer = issuer

    def read(
        self,
        id_token_hint: str | None,
        client_id: str | None,
        post_logout_redirect_uri: str | None,
        state: str | None,
    ) -> LogoutRequest:
        hinted = self._hint(id_token_hint) if id_token_hint else None
        hint, audience = hinted if hinted else (None, None)
        # The hint names its app; a client_id that names another makes the request doubtful
        # (RP-Initiated Logout 1.0, 2: the OP verifies they match), so neither is believed.
        if audience is not None and client_id and client_id != audience:
            hint, audience = None, None
        client = self._client(audience or client_id)
        if hint is not None and client is None:
            hint = None  # an ID token of an app since removed vouches for nothing
        return_to = None
        if client is not None and post_logout_redirect_uri in client.post_logout_redirect_uris:
            return_to = with_state(post_logout_redirect_uri, state)
        return LogoutRequest(client, hint, return_to)

    def _hint(self, token: str) -> tuple[Hint, str] | None:
        """The hint and its audience when we signed it (any algorithm, any current or previous
        key) as this issuer's ID token for one app; else None."""
        for algorithm in self._signer.algorithms:
            claims = self._signer.verify(token, algorithm, ID_TOKEN_TYPE)
            if claims is not None:
                break
        else:
            return None
        audience = claims.get("aud")
        if isinstance(audience, list) and len(audience) == 1:
            audience = audience[0]
        if claims.get("iss") != self._issuer or not isinstance(audience, str):
            return None
        try:
            hint = Hint(UUID(str(claims["sub"])), UUID(str(claims["sid"])))
        except (KeyError, ValueError):
            return None
        return hint, audience

    def _client(self, client_id: str | None) -> ClientView | None:
        if not client_id:
            return None
        try:
            return self._clients.client(client_id)
        except ClientNotFound:
            return None


def with_state(uri: str, state: str | None) -> str:
    """`uri` with `state` added to its query, the rest of it exactly as registered."""
    if state is None:
        return uri
    return uri + ("&" if urlsplit(uri).query else "?") + urlencode({"state": state})
