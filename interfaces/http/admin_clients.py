"""/api/admin/clients: the apps that may use tessera for sign-in (OpenID Provider clients), for
accounts holding the admin role. A secret is in the answer that makes it, and in no other."""

from __future__ import annotations

from uuid import UUID

import msgspec
from litestar import Controller, Response, delete, get, patch, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from application.clients.registry import Clients, ClientView, IssuedSecret
from application.ports import Caller
from domain.client import ClientSettings
from interfaces.http.admin import admin, operator
from interfaces.http.openapi import BEARER_ERRORS, BODY, problems
from interfaces.http.schemas import ClientChanges, ClientRequest, ClientSecret, given
from interfaces.http.security import BEARER

# The answers that show a secret are kept by no cache, shared or the browser's.
_NO_STORE = {"Cache-Control": "no-store"}


def _shown(issued: IssuedSecret, status: int) -> Response[ClientSecret]:
    return Response(
        ClientSecret(issued.client_id, issued.client_secret), status_code=status, headers=_NO_STORE
    )


class ClientsController(Controller):
    path = "/api/admin/clients"
    tags = ["admin"]
    dependencies = {"claims": BEARER, "admin": Provide(admin, sync_to_thread=False)}
    security = [{"bearer": []}]

    @post(
        sync_to_thread=True,
        status_code=HTTP_201_CREATED,
        responses=problems(*BODY, 403, *BEARER_ERRORS),
    )
    def register(
        self,
        admin: NamedDependency[Caller],
        clients: NamedDependency[Clients],
        data: JSONBody[ClientRequest],
    ) -> Response[ClientSecret]:
        """Registers a client; the answer holds its secret (none for a public client), the
        only time it is shown."""
        settings = ClientSettings(**msgspec.structs.asdict(data))
        return _shown(clients.register(settings, operator(admin)), HTTP_201_CREATED)

    @get(sync_to_thread=True, responses=problems(400, 403, *BEARER_ERRORS))
    def list_clients(
        self, admin: NamedDependency[Caller], clients: NamedDependency[Clients]
    ) -> list[ClientView]:
        """Every registered client, by name."""
        return clients.list()

    @get("/{client_id:uuid}", sync_to_thread=True, responses=problems(400, 403, *BEARER_ERRORS))
    def client(
        self,
        admin: NamedDependency[Caller],
        client_id: FromPath[UUID],
        clients: NamedDependency[Clients],
    ) -> ClientView:
        return clients.client(str(client_id))

    @patch(
        "/{client_id:uuid}",
        sync_to_thread=True,
        status_code=HTTP_200_OK,
        responses=problems(*BODY, 403, *BEARER_ERRORS),
    )
    def update(
        self,
        admin: NamedDependency[Caller],
        client_id: FromPath[UUID],
        clients: NamedDependency[Clients],
        data: JSONBody[ClientChanges],
    ) -> ClientView:
        """Changes the fields given; the others stay."""
        return clients.update(str(client_id), given(data), operator(admin))

    @post(
        "/{client_id:uuid}/secret",
        sync_to_thread=True,
        status_code=HTTP_200_OK,
        responses=problems(400, 403, 503, *BEARER_ERRORS),
    )
    def rotate_secret(
        self,
        admin: NamedDependency[Caller],
        client_id: FromPath[UUID],
        clients: NamedDependency[Clients],
    ) -> Response[ClientSecret]:
        """A new secret, shown once; the previous one keeps working for 24 hours, so the app
        can be redeployed with the new one meanwhile."""
        return _shown(clients.rotate_secret(str(client_id), operator(admin)), HTTP_200_OK)

    @delete(
        "/{client_id:uuid}",
        sync_to_thread=True,
        status_code=HTTP_204_NO_CONTENT,
        responses=problems(400, 403, *BEARER_ERRORS),
    )
    def remove(
        self,
        admin: NamedDependency[Caller],
        client_id: FromPath[UUID],
        clients: NamedDependency[Clients],
    ) -> None:
        clients.remove(str(client_id), operator(admin))
