"""/api/users/me: the signed-in account's own profile."""

from __future__ import annotations

from litestar import Controller, get, put
from litestar.di import NamedDependency
from litestar.params import JSONBody

from application.ports import AccessClaims
from application.profile import Profile
from interfaces.http.schemas import AccountResponse, ProfileUpdate
from interfaces.http.security import BEARER


class MeController(Controller):
    path = "/api/users/me"
    tags = ["me"]
    dependencies = {"claims": BEARER}
    security = [{"bearer": []}]

    @get(sync_to_thread=True)
    def show(
        self, claims: NamedDependency[AccessClaims], profile: NamedDependency[Profile]
    ) -> AccountResponse:
        return AccountResponse.of(profile.show(claims.account_id))

    @put(sync_to_thread=True)
    def update(
        self,
        claims: NamedDependency[AccessClaims],
        data: JSONBody[ProfileUpdate],
        profile: NamedDependency[Profile],
    ) -> AccountResponse:
        return AccountResponse.of(profile.update(claims.account_id, data.display_name))
