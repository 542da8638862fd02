"""Reads of a caller's own views say how far they may trail the caller's own commands."""

from __future__ import annotations

from typing import TypeVar

from litestar import Response
from litestar.datastructures import ResponseHeader

T = TypeVar("T")

READ_BEHIND = "Tessera-Read-Behind"

# Listed in OpenAPI on every read that waits for its projection.
READ_BEHIND_HEADERS = [
    ResponseHeader(
        name=READ_BEHIND,
        description="0 when the answer reflects every command of this caller's; otherwise how "
        "many log positions it may trail them by (the read waited READ_YOUR_WRITES_WAIT "
        "seconds for the projection and answered what it had).",
        documentation_only=True,
    )
]


def own_read(content: T, behind: int) -> Response[T]:
    return Response(content, headers={READ_BEHIND: str(behind)})
