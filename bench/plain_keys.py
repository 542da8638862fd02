"""The same service with sealing off, for the bench alone: what encrypting personal values costs
is measured against it, in the same run (docs/audit/erasure.md).

PlainDataKeys passes values through `seal` and `open` unencrypted and never asks the key table,
so the difference to the real service is exactly the work WrappedDataKeys does: the per-person
key lookup (cached for 30 s, else a read of the key table and an unwrap) and one AES-GCM
operation per personal value. The mapper's framing of a sealed value (its owner id, base64, the
digest the audit trail keeps) is still done, so it is counted on neither side.

No setting chooses this: a service built with it would store personal data in plain text.
`python -m bench.plain_keys serve [--workers N]` is `tessera serve` with these keys; the data
it serves must have been seeded with them too (`build(settings, data_keys=PlainDataKeys)`).
"""

from __future__ import annotations

import sys
from uuid import UUID

from litestar import Litestar

from infrastructure.data_keys import WrappedDataKeys
from interfaces import asgi, cli
from interfaces.container import Container, build
from interfaces.settings import Settings

APP = "bench.plain_keys:app"


class PlainDataKeys(WrappedDataKeys):
    """Keys that keep nothing secret: forgetting, fingerprints and the table are the real ones."""

    def seal(self, owner: UUID, context: bytes, plaintext: bytes) -> bytes:
        return plaintext

    def open(self, owner: UUID, context: bytes, sealed: bytes) -> bytes | None:
        return sealed


def plain_container(settings: Settings) -> Container:
    return build(settings, data_keys=PlainDataKeys)


def app() -> Litestar:
    """The ASGI app factory each server process calls: interfaces.asgi's, with plain keys."""
    return asgi.app(plain_container)


if __name__ == "__main__":
    sys.exit(cli.main(sys.argv[1:], app=APP))
