"""/api/audit: the trail, for accounts holding the auditor role."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from litestar import Controller, MediaType, Response, get
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, QueryParameter

from application.accounts.administration import require_role
from application.audit.history import History
from application.ports import Caller
from application.read_side.queries import MAX_PAGE, AuditFilter, Page, ReadSide
from application.views import AccountState
from domain.errors import FieldError, Invalid
from interfaces.http.openapi import BEARER_ERRORS, problems
from interfaces.http.own_reads import READ_BEHIND_HEADERS, own_read
from interfaces.http.schemas import MAX_CURSOR, AuditPage
from interfaces.http.security import BEARER

# Optional inside the annotation, so the bounds apply to a value when one is given.
EventType = Annotated[
    str | None, QueryParameter(min_length=1, max_length=64, pattern=r"^[A-Za-z]+$(?!\n)")
]
# An ISO 8601 date-time, as documented. Typed `datetime`, the framework also took a bare number as
# a Unix time (`until=0.002`), which the schema does not say (found by the fuzzer).
_ISO_8601 = QueryParameter(
    max_length=40,
    pattern=r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})?$(?!\n)",
    schema_extra={"format": "date-time"},
)
IsoDateTime = Annotated[str, _ISO_8601]
MaybeIsoDateTime = Annotated[str | None, _ISO_8601]


def instant(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise Invalid(FieldError(name, "format", "must be an ISO 8601 date-time")) from None


def auditor(claims: NamedDependency[Caller]) -> Caller:
    require_role(claims, "auditor")
    return claims


class AuditController(Controller):
    path = "/api/audit"
    tags = ["audit"]
    dependencies = {"claims": BEARER, "auditor": Provide(auditor, sync_to_thread=False)}
    security = [{"bearer": []}]

    @get(
        "/events",
        sync_to_thread=True,
        return_dto=AuditPage,
        media_type=MediaType.JSON,  # lost from OpenAPI when a DTO meets Response[...]
        responses=problems(400, 403, *BEARER_ERRORS),
        response_headers=READ_BEHIND_HEADERS,
    )
    def events(
        self,
        auditor: NamedDependency[Caller],
        read_side: NamedDependency[ReadSide],
        account_id: FromQuery[UUID | None] = None,
        type: EventType = None,
        since: MaybeIsoDateTime = None,
        until: MaybeIsoDateTime = None,
        cursor: Annotated[int | None, QueryParameter(ge=0, le=MAX_CURSOR)] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = 100,
    ) -> Response[Page]:
        """Security events in store order, filtered; `cursor` is the last position seen."""
        query = AuditFilter(
            account_id, type, instant(since, "since"), instant(until, "until"), cursor, limit
        )
        behind = read_side.caught_up("audit_log", auditor.written)
        return own_read(read_side.audit_events(query), behind)

    @get(
        "/accounts/{account_id:uuid}/state",
        sync_to_thread=True,
        responses=problems(400, 403, *BEARER_ERRORS),
    )
    def state(
        self,
        auditor: NamedDependency[Caller],
        account_id: FromPath[UUID],
        as_of: IsoDateTime,
        history: NamedDependency[History],
    ) -> AccountState:
        """The account rebuilt from its own events up to `as_of` (ISO 8601; UTC if no offset):
        404 before it was registered."""
        at = instant(as_of, "as_of")
        assert at is not None
        return history.state_as_of(account_id, at)
