"""/api/admin/webhooks: the systems that are sent tessera's events (Standard Webhooks), for
accounts holding the admin role; any admin manages any endpoint. A secret is in the answer that
makes it, and in no other."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import msgspec
from litestar import Controller, Response, delete, get, patch, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import (
    HTTP_200_OK,
    HTTP_201_CREATED,
    HTTP_202_ACCEPTED,
    HTTP_204_NO_CONTENT,
)

from application.ports import Caller
from application.webhooks.deliveries import MAX_DELIVERIES, Deliveries, DeliveryView
from application.webhooks.endpoints import EndpointSecret, EndpointView, WebhookEndpoints
from application.webhooks.replay import Replays, ReplayView
from domain.webhook import EndpointSettings
from interfaces.http.admin import admin, operator
from interfaces.http.openapi import BEARER_ERRORS, BODY, problems
from interfaces.http.schemas import (
    ReplayRequest,
    WebhookChanges,
    WebhookRequest,
    WebhookSecret,
    given,
)
from interfaces.http.security import BEARER

# The answers that show a secret are kept by no cache, shared or the browser's.
_NO_STORE = {"Cache-Control": "no-store"}

Limit = Annotated[int, QueryParameter(ge=1, le=MAX_DELIVERIES, description="At most this many.")]


def _shown(issued: EndpointSecret, status: int) -> Response[WebhookSecret]:
    return Response(WebhookSecret(issued.id, issued.secret), status_code=status, headers=_NO_STORE)


class WebhooksController(Controller):
    path = "/api/admin/webhooks"
    tags = ["admin"]
    dependencies = {"claims": BEARER, "admin": Provide(admin, sync_to_thread=False)}
    security = [{"bearer": []}]

    @post(
        sync_to_thread=True,
        status_code=HTTP_201_CREATED,
        responses=problems(*BODY, 403, *BEARER_ERRORS),
    )
    def create(
        self,
        admin: NamedDependency[Caller],
        webhooks: NamedDependency[WebhookEndpoints],
        data: JSONBody[WebhookRequest],
    ) -> Response[WebhookSecret]:
        """Makes an endpoint; the answer holds its secret (whsec_…), the only time it is
        shown. It is sent the events it names from now on (a replay sends older ones)."""
        settings = EndpointSettings(**msgspec.structs.asdict(data))
        return _shown(webhooks.create(settings, operator(admin)), HTTP_201_CREATED)

    @get(sync_to_thread=True, responses=problems(400, 403, *BEARER_ERRORS))
    def list_webhooks(
        self, admin: NamedDependency[Caller], webhooks: NamedDependency[WebhookEndpoints]
    ) -> list[EndpointView]:
        """Every endpoint, oldest first."""
        return webhooks.list()

    @get("/{webhook_id:uuid}", sync_to_thread=True, responses=problems(400, 403, *BEARER_ERRORS))
    def webhook(
        self,
        admin: NamedDependency[Caller],
        webhook_id: FromPath[UUID],
        webhooks: NamedDependency[WebhookEndpoints],
    ) -> EndpointView:
        return webhooks.endpoint(str(webhook_id))

    @patch(
        "/{webhook_id:uuid}",
        sync_to_thread=True,
        status_code=HTTP_200_OK,
        responses=problems(*BODY, 403, *BEARER_ERRORS),
    )
    def update(
        self,
        admin: NamedDependency[Caller],
        webhook_id: FromPath[UUID],
        webhooks: NamedDependency[WebhookEndpoints],
        data: JSONBody[WebhookChanges],
    ) -> EndpointView:
        """Changes the fields given; the others stay."""
        return webhooks.update(str(webhook_id), given(data), operator(admin))

    @delete(
        "/{webhook_id:uuid}",
        sync_to_thread=True,
        status_code=HTTP_204_NO_CONTENT,
        responses=problems(400, 403, *BEARER_ERRORS),
    )
    def remove(
        self,
        admin: NamedDependency[Caller],
        webhook_id: FromPath[UUID],
        webhooks: NamedDependency[WebhookEndpoints],
    ) -> None:
        """Removes the endpoint; what was still to be sent to it is dropped."""
        webhooks.remove(str(webhook_id), operator(admin))

    @post(
        "/{webhook_id:uuid}/secret",
        sync_to_thread=True,
        status_code=HTTP_200_OK,
        responses=problems(400, 403, 503, *BEARER_ERRORS),
    )
    def rotate_secret(
        self,
        admin: NamedDependency[Caller],
        webhook_id: FromPath[UUID],
        webhooks: NamedDependency[WebhookEndpoints],
    ) -> Response[WebhookSecret]:
        """A new secret, shown once; for 24 hours every delivery is signed by the previous one
        too (two signatures), so the receiver can be redeployed with the new one meanwhile."""
        return _shown(webhooks.rotate_secret(str(webhook_id), operator(admin)), HTTP_200_OK)

    @post(
        "/{webhook_id:uuid}/replay",
        sync_to_thread=True,
        status_code=HTTP_202_ACCEPTED,
        responses=problems(*BODY, 403, *BEARER_ERRORS),
    )
    def replay(
        self,
        admin: NamedDependency[Caller],
        webhook_id: FromPath[UUID],
        replays: NamedDependency[Replays],
        data: JSONBody[ReplayRequest],
    ) -> ReplayView:
        """Sends again every event the endpoint wants since a log position or an instant, in
        order, under new webhook-ids (derived from the replay and the event)."""
        return replays.replay(str(webhook_id), data.since, operator(admin))

    @get(
        "/{webhook_id:uuid}/deliveries",
        sync_to_thread=True,
        responses=problems(400, 403, *BEARER_ERRORS),
    )
    def deliveries(
        self,
        admin: NamedDependency[Caller],
        webhook_id: FromPath[UUID],
        webhook_deliveries: NamedDependency[Deliveries],
        limit: Limit = 100,
    ) -> list[DeliveryView]:
        """The endpoint's latest deliveries, newest first: tries, last status code, next try."""
        return webhook_deliveries.of(str(webhook_id), limit)
