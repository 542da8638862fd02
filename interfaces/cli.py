"""The `tessera` command."""

from __future__ import annotations

import argparse
import logging
import sys

from interfaces.settings import load_settings


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from interfaces.container import build
    from interfaces.http.app import create_app

    settings = load_settings()
    container = build(settings)
    app = create_app(container)
    print(
        f"tessera: serving on http://{settings.host}:{settings.port} "
        f"(data in {settings.data_path.resolve()}, "
        f"{'PostgreSQL' if settings.database_url else 'SQLite'})",
        flush=True,
    )
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", access_log=False)
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    parser = argparse.ArgumentParser(prog="tessera", description="Event-sourced authentication.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="serve the HTTP API (and, embedded, the mail worker)")
    args = parser.parse_args(argv)
    handlers = {"serve": serve}
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
