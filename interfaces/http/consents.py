"""/api/users/me/consents: the apps (OpenID Provider clients) the person let have access, and
withdrawing that access, which ends the app's sessions of theirs."""

from __future__ import annotations

from litestar import Controller, delete, get
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.status_codes import HTTP_204_NO_CONTENT

from application.clients.consents import Consents, ConsentView
from application.ports import Caller
from application.views import Client
from interfaces.http.openapi import BEARER_ERRORS, problems
from interfaces.http.security import BEARER


class MyConsentsController(Controller):
    path = "/api/users/me/consents"
    tags = ["me"]
    dependencies = {"claims": BEARER}
    security = [{"bearer": []}]

    @get(sync_to_thread=True, responses=problems(*BEARER_ERRORS))
    def list_consents(
        self, claims: NamedDependency[Caller], consents: NamedDependency[Consents]
    ) -> list[ConsentView]:
        """The apps with access, oldest consent first, each with the scopes it was given."""
        return consents.of(claims.account_id)

    @delete(
        "/{client_id:str}",
        sync_to_thread=True,
        status_code=HTTP_204_NO_CONTENT,
        responses=problems(400, *BEARER_ERRORS),
    )
    def revoke_consent(
        self,
        claims: NamedDependency[Caller],
        client_id: FromPath[str],
        consents: NamedDependency[Consents],
        client: NamedDependency[Client],
    ) -> None:
        """Withdraws the app's access (404 consent_not_found when it has none): its sessions of
        this account end, so its refresh tokens stop at once and its access tokens are inactive
        at introspection and userinfo; it must ask again. No re-authentication: this takes
        access away, it adds none."""
        consents.revoke(claims.account_id, client_id, client)
