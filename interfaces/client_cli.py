"""`tessera admin client ...`: registering, listing and removing the OpenID Provider's clients."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any

from domain.client import DEFAULT_SCOPES, GRANTS, SIGNING_ALGORITHMS, ClientSettings
from domain.errors import ClientNotFound
from interfaces.container import Container


def add_client_commands(actions: Any) -> None:
    client = actions.add_parser("client", help="the apps that use tessera for sign-in (OIDC)")
    commands = client.add_subparsers(dest="client_action", required=True)
    create = commands.add_parser(
        "create", help="register a client; prints {client_id, client_secret} (shown once)"
    )
    create.add_argument("name")
    create.add_argument(
        "--redirect-uri", action="append", default=[], dest="redirect_uris", metavar="URI"
    )
    create.add_argument(
        "--post-logout-redirect-uri",
        action="append",
        default=[],
        dest="post_logout_redirect_uris",
        metavar="URI",
    )
    create.add_argument(
        "--grant",
        action="append",
        choices=GRANTS,
        dest="grant_types",
        help="repeat for each (default: authorization_code)",
    )
    create.add_argument(
        "--scope",
        action="append",
        dest="scopes",
        help=f"repeat for each (default: {' '.join(DEFAULT_SCOPES)})",
    )
    create.add_argument(
        "--public", action="store_true", help="an app that cannot keep a secret (PKCE instead)"
    )
    create.add_argument("--trusted", action="store_true", help="skips the consent page")
    create.add_argument(
        "--resource",
        action="append",
        default=[],
        dest="resources",
        metavar="URI",
        help="an API its access tokens may be for (RFC 8707); repeat for each",
    )
    create.add_argument(
        "--web-origin",
        action="append",
        dest="web_origins",
        metavar="ORIGIN",
        help="an origin its browser app calls from (default: the redirect URIs' origins)",
    )
    create.add_argument(
        "--id-token-alg",
        choices=SIGNING_ALGORITHMS,
        default="RS256",
        dest="id_token_signed_response_alg",
        help="how its ID tokens are signed (default: RS256)",
    )
    commands.add_parser("list", help="every client, as JSON Lines (no secrets)")
    remove = commands.add_parser("remove", help="remove a client: its secret stops working")
    remove.add_argument("client_id")


def run_client_command(container: Container, args: argparse.Namespace) -> int:
    clients = container.clients
    operator: str = args.operator
    if args.client_action == "create":
        settings = ClientSettings(
            name=args.name,
            redirect_uris=tuple(args.redirect_uris),
            post_logout_redirect_uris=tuple(args.post_logout_redirect_uris),
            grant_types=tuple(args.grant_types or ("authorization_code",)),
            scopes=tuple(args.scopes or DEFAULT_SCOPES),
            public=args.public,
            trusted=args.trusted,
            id_token_signed_response_alg=args.id_token_signed_response_alg,
            resources=tuple(args.resources),
            web_origins=None if args.web_origins is None else tuple(args.web_origins),
        )
        issued = clients.register(settings, operator)
        print(json.dumps(dataclasses.asdict(issued)))
        return 0
    if args.client_action == "list":
        for view in clients.list():
            print(json.dumps(dataclasses.asdict(view), default=str))
        return 0
    try:
        clients.remove(args.client_id, operator)
    except ClientNotFound:
        print(f"no client {args.client_id!r}", file=sys.stderr)
        return 2
    print(f"removed client {args.client_id}")
    return 0
