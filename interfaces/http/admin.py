"""/api/admin: account administration, for accounts holding the admin role."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from litestar import Controller, Response, delete, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_204_NO_CONTENT

from application.accounts.administration import Administration, require_role
from application.ports import AccessClaims, Caller
from application.privacy.erasure import Erasure
from application.read_side.queries import MAX_PAGE, AccountList, ReadSide
from interfaces.http.openapi import BEARER_ERRORS, BODY, problems
from interfaces.http.own_reads import READ_BEHIND_HEADERS, own_read
from interfaces.http.schemas import LockRequest
from interfaces.http.security import BEARER

SearchText = Annotated[
    str,
    QueryParameter(
        max_length=254,
        pattern=r"^[^\x00-\x1f\x7f-\x9f]*$(?!\n)",
        description="An exact email address or username, compared as registration compares "
        "them (case-insensitively; the email NFKC-normalised), as Keycloak's exact search: "
        "a part of one matches nothing. The accounts keep both only as keyed fingerprints.",
    ),
]
# The `next_after` of the page before: its last account's registration time and id.
Cursor = Annotated[
    str,
    QueryParameter(
        max_length=64,
        pattern=r"^([0-9]{1,16}(\.[0-9]{1,9})?:[0-9a-f-]{36})?$(?!\n)",
        description="The `next_after` of the previous page.",
    ),
]


def admin(claims: NamedDependency[Caller]) -> Caller:
    require_role(claims, "admin")
    return claims


def operator(claims: AccessClaims) -> str:
    """How the events name an administrator acting over HTTP."""
    return f"account:{claims.account_id}"


class AdminController(Controller):
    path = "/api/admin/accounts"
    tags = ["admin"]
    dependencies = {"claims": BEARER, "admin": Provide(admin, sync_to_thread=False)}
    security = [{"bearer": []}]

    @get(
        sync_to_thread=True,
        responses=problems(400, 403, *BEARER_ERRORS),
        response_headers=READ_BEHIND_HEADERS,
    )
    def list_accounts(
        self,
        admin: NamedDependency[Caller],
        read_side: NamedDependency[ReadSide],
        q: SearchText = "",
        after: Cursor = "",
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = 100,
    ) -> Response[AccountList]:
        """Every account, in the order they registered; with `q`, the account whose email or
        username `q` is exactly."""
        behind = read_side.caught_up("accounts", admin.written)
        return own_read(read_side.account_list(q, after, limit), behind)

    @post(
        "/{account_id:uuid}/lock",
        sync_to_thread=True,
        status_code=HTTP_204_NO_CONTENT,
        responses=problems(*BODY, 403, *BEARER_ERRORS),
    )
    def lock(
        self,
        admin: NamedDependency[Caller],
        account_id: FromPath[UUID],
        administration: NamedDependency[Administration],
        data: JSONBody[LockRequest | None] = None,
    ) -> None:
        until = data.until if data else None
        administration.lock(str(account_id), operator(admin), until)

    @post(
        "/{account_id:uuid}/unlock",
        sync_to_thread=True,
        status_code=HTTP_204_NO_CONTENT,
        responses=problems(*BODY, 403, *BEARER_ERRORS),
    )
    def unlock(
        self,
        admin: NamedDependency[Caller],
        account_id: FromPath[UUID],
        administration: NamedDependency[Administration],
    ) -> None:
        administration.unlock(str(account_id), operator(admin))

    @post(
        "/{account_id:uuid}/disable",
        sync_to_thread=True,
        status_code=HTTP_204_NO_CONTENT,
        responses=problems(*BODY, 403, *BEARER_ERRORS),
    )
    def disable(
        self,
        admin: NamedDependency[Caller],
        account_id: FromPath[UUID],
        administration: NamedDependency[Administration],
    ) -> None:
        administration.disable(str(account_id), operator(admin))

    @delete(
        "/{account_id:uuid}",
        sync_to_thread=True,
        status_code=HTTP_204_NO_CONTENT,
        responses=problems(400, 403, 404, *BEARER_ERRORS),
    )
    def erase(
        self,
        admin: NamedDependency[Caller],
        account_id: FromPath[UUID],
        erasure: NamedDependency[Erasure],
    ) -> None:
        """Forgets the account's person (an operator's erasure, named in AccountErased)."""
        erasure.erase(str(account_id), operator(admin))

    @post(
        "/{account_id:uuid}/enable",
        sync_to_thread=True,
        status_code=HTTP_204_NO_CONTENT,
        responses=problems(*BODY, 403, *BEARER_ERRORS),
    )
    def enable(
        self,
        admin: NamedDependency[Caller],
        account_id: FromPath[UUID],
        administration: NamedDependency[Administration],
    ) -> None:
        administration.enable(str(account_id), operator(admin))
