"""The `tessera` command."""

from __future__ import annotations

import argparse
import functools
import logging
import sys
from typing import TYPE_CHECKING

from infrastructure.data_keys import KeyStoreEmpty
from infrastructure.keyring import WrongSecretKey
from infrastructure.keys import KeySettingRefused
from infrastructure.tracing import configure_tracing
from interfaces import admin_cli, audit_cli, migrate_cli
from interfaces.container import NoStore
from interfaces.logs import configure_logging
from interfaces.settings import Settings, load_settings

if TYPE_CHECKING:
    from interfaces.container import Container

log = logging.getLogger("tessera")

APP = "interfaces.asgi:app"  # the ASGI app factory each server process calls


def serve(args: argparse.Namespace, app: str = APP) -> int:
    import os
    import shutil

    import uvicorn

    settings = load_settings()
    workers = args.workers or (os.cpu_count() or 1 if settings.database_url else 1)
    if workers > 1 and not settings.database_url:
        # SQLite is one process's database: its projections have no lease to share out.
        log.error("--workers above 1 needs DATABASE_URL (PostgreSQL)")
        return 2
    if workers > 1:
        # prometheus_client's multiprocess mode: each server process writes its samples to
        # files here, and /metrics adds them up, so counters are right whichever process answers.
        directory = settings.data_path / "prometheus"
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory.resolve())
    from interfaces.container import build

    # Refused here, before any worker starts: a SECRET_KEY that opens none of the store's keys
    # would answer 500s, or let an address already in use register again (WrongSecretKey).
    # And erasures a restored event store had lost are re-applied before anyone is served.
    _started(build(settings)).close()
    log.info(
        "serving on http://%s:%s with %s worker process(es) (data in %s, %s)",
        settings.host,
        settings.port,
        workers,
        settings.data_path.resolve(),
        "PostgreSQL" if settings.database_url else "SQLite",
    )
    if not settings.redis_url:  # else `tessera worker` sends the mail, and says where
        say_where_mail_goes(settings)
    # log_config=None: uvicorn logs through the root logger, in the shape of everything else.
    config = uvicorn.Config(
        app,
        factory=True,
        workers=workers,
        host=settings.host,
        port=settings.port,
        log_config=None,
        log_level="warning",
        access_log=False,
    )
    if workers > 1:
        from interfaces.workers import supervisor

        supervisor(config).run()
        return 0
    server = uvicorn.Server(config)
    server.run()
    return 0 if server.started else 3  # uvicorn's own exit code for a failed startup


def say_where_mail_goes(settings: Settings) -> None:
    """A newcomer's first mail (the verification link) is looked for in an inbox: say where."""
    if settings.mail_server:
        log.info("mail goes to the SMTP server %s:%s", settings.mail_server, settings.mail_port)
    else:
        log.info(
            "mail is written to %s/ as .eml files, one per message (MAIL_SERVER is unset)",
            (settings.data_path / "mail").resolve(),
        )


def _started(container: Container) -> Container:
    """A service's container, once the erasures the event store lost to a restore (those the
    ledger kept with the keys names) are re-applied (application/restore.py)."""
    try:
        container.after_restore.reapply_erasures()
    except BaseException:
        container.close()
        raise
    return container


def projector(args: argparse.Namespace) -> int:
    import signal

    from interfaces.container import build

    container = _started(build(load_settings()))

    def stop(*_: object) -> None:
        container.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    names = ", ".join(p.name for p in container.projectors)
    log.info("projecting %s", names)
    container.run_projectors()
    container.close()
    return 0


def worker(args: argparse.Namespace) -> int:
    import signal
    import threading

    from prometheus_client import start_http_server

    from interfaces.container import build

    settings = load_settings()
    if not settings.redis_url:
        log.error("tessera worker needs REDIS_URL: on the embedded default, serve runs the worker")
        return 2
    container = _started(build(settings))
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    if settings.worker_metrics_port:
        start_http_server(settings.worker_metrics_port, addr=settings.host)
    container.mail_broker.start_worker(
        settings.worker_threads, webhook_threads=settings.webhook_worker_threads
    )
    log.info("delivering mail with %s threads", settings.worker_threads)
    say_where_mail_goes(settings)
    stopped.wait()
    container.close()
    return 0


def main(argv: list[str] | None = None, app: str = APP) -> int:
    """`app`: the ASGI app factory `serve` runs; only Python callers (the bench) choose another."""
    parser = argparse.ArgumentParser(prog="tessera", description="Event-sourced authentication.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_command = commands.add_parser(
        "serve", help="serve the HTTP API (and, without Redis, the projections and mail worker)"
    )
    serve_command.add_argument(
        "--workers",
        type=int,
        default=0,
        help="server processes (default: the number of cores on PostgreSQL, 1 on SQLite)",
    )
    serve_command.set_defaults(run=functools.partial(serve, app=app))
    projector_command = commands.add_parser(
        "projector", help="run the projections (many copies may run)"
    )
    projector_command.set_defaults(run=projector)
    projector_actions = projector_command.add_subparsers(dest="action")
    rebuild_command = projector_actions.add_parser(
        "rebuild", help="empty a read model and replay every event into it"
    )
    rebuild_command.add_argument("name", choices=admin_cli.REBUILDABLE)
    rebuild_command.add_argument(
        "--wait", type=float, default=10.0, help="seconds to wait for the projection's lease"
    )
    rebuild_command.set_defaults(run=admin_cli.rebuild)
    commands.add_parser(
        "worker", help="deliver mail from the Redis queue (many copies may run)"
    ).set_defaults(run=worker)
    admin_cli.add_commands(commands)
    audit_cli.register(commands)
    migrate_cli.register(commands)
    args = parser.parse_args(argv)
    settings = load_settings()
    # The services log to stdout; the operators' commands to stderr, since stdout carries
    # what they print (a listing, an export).
    services = ("serve", "projector", "worker")
    is_service = args.command in services and not getattr(args, "action", None)
    stream = sys.stdout if is_service else sys.stderr
    configure_logging(
        settings.log_level,
        settings.log_file,
        stream=stream,
        log_format=settings.log_format,
        service_name=settings.otel_service_name,
    )
    configure_tracing(settings.otel_service_name, settings.otel_exporter_otlp_endpoint)
    try:
        code: int = args.run(args)
    except (WrongSecretKey, KeyStoreEmpty, NoStore, KeySettingRefused) as refused:
        if is_service:
            log.error("%s", refused)
        else:  # a person at a terminal reads it: plain words, not a log line
            print(f"tessera {args.command}: {refused}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
