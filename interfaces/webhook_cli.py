"""`tessera admin webhook ...`: the same as /api/admin/webhooks, from the server's shell. Each
answer is JSON (a list as JSON Lines), as the API answers it."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from datetime import datetime
from typing import Any

from domain.errors import DomainError, FieldError, Invalid, WebhookNotFound
from domain.webhook import EndpointSettings
from domain.webhook_events import CATALOGUE
from interfaces.container import Container


def add_webhook_commands(actions: Any) -> None:
    webhook = actions.add_parser("webhook", help="the systems that are sent tessera's events")
    commands = webhook.add_subparsers(dest="webhook_action", required=True)
    create = commands.add_parser(
        "create", help="make an endpoint; prints {id, secret} (the secret is shown once)"
    )
    create.add_argument("url")
    _settings(create, required=True)
    commands.add_parser("list", help="every endpoint, as JSON Lines (no secrets)")
    show = commands.add_parser("show", help="one endpoint")
    show.add_argument("id")
    update = commands.add_parser("update", help="change the settings given")
    update.add_argument("id")
    update.add_argument("--url")
    _settings(update, required=False)
    enabled = update.add_mutually_exclusive_group()
    enabled.add_argument("--enable", action="store_const", const=True, dest="enabled")
    enabled.add_argument("--disable", action="store_const", const=False, dest="enabled")
    remove = commands.add_parser("remove", help="remove an endpoint and what it still had to get")
    remove.add_argument("id")
    rotate = commands.add_parser(
        "rotate-secret", help="a new secret (shown once); the old one also signs for 24 hours"
    )
    rotate.add_argument("id")
    replay = commands.add_parser("replay", help="send every matching event since SINCE again")
    replay.add_argument("id")
    replay.add_argument("since", help="a log position (0: the first event) or an RFC 3339 instant")
    deliveries = commands.add_parser("deliveries", help="the latest deliveries, as JSON Lines")
    deliveries.add_argument("id")
    deliveries.add_argument("--limit", type=int, default=100)


def _settings(parser: argparse.ArgumentParser, required: bool) -> None:
    parser.add_argument(
        "--event",
        action="append",
        dest="events",
        required=required,
        metavar="TYPE",
        help=f"repeat for each; one of {', '.join(CATALOGUE)}",
    )
    parser.add_argument("--description")
    personal = parser.add_mutually_exclusive_group()
    personal.add_argument(
        "--include-personal",
        action="store_const",
        const=True,
        dest="include_personal",
        help="email, username and display name in the bodies",
    )
    if not required:
        personal.add_argument(
            "--no-personal", action="store_const", const=False, dest="include_personal"
        )


def run_webhook_command(container: Container, args: argparse.Namespace) -> int:
    try:
        return _run(container, args)
    except WebhookNotFound:
        print(f"no webhook endpoint {args.id!r}", file=sys.stderr)
        return 2
    except Invalid as invalid:
        print(str(invalid), file=sys.stderr)
        return 2
    except DomainError as refused:
        print(type(refused).__name__, file=sys.stderr)
        return 2


def _run(container: Container, args: argparse.Namespace) -> int:
    webhooks, operator = container.webhooks, str(args.operator)
    action = args.webhook_action
    if action == "create":
        settings = EndpointSettings(
            url=args.url,
            events=tuple(args.events),
            description=args.description or "",
            include_personal=bool(args.include_personal),
        )
        _print(webhooks.create(settings, operator))
    elif action == "list":
        for view in webhooks.list():
            _print(view)
    elif action == "show":
        _print(webhooks.endpoint(args.id))
    elif action == "update":
        given = {
            "url": args.url,
            "events": None if args.events is None else tuple(args.events),
            "description": args.description,
            "include_personal": args.include_personal,
            "enabled": args.enabled,
        }
        _print(
            webhooks.update(args.id, {k: v for k, v in given.items() if v is not None}, operator)
        )
    elif action == "remove":
        webhooks.remove(args.id, operator)
        print(f"removed webhook endpoint {args.id}")
    elif action == "rotate-secret":
        _print(webhooks.rotate_secret(args.id, operator))
    elif action == "replay":
        _print(container.replays.replay(args.id, _since(args.since), operator))
    else:
        for delivery in container.webhook_deliveries.of(args.id, args.limit):
            _print(delivery)
    return 0


def _since(text: str) -> int | datetime:
    if text.isdigit():
        return int(text)
    refused = Invalid(FieldError("since", "format", "a log position, or an instant with offset"))
    try:
        instant = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise refused from None
    if instant.tzinfo is None:
        raise refused
    return instant


def _print(view: Any) -> None:
    print(json.dumps(dataclasses.asdict(view), default=str))
