"""The Litestar application: routes, dependencies, problem responses, limits, OpenAPI."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgspec
import psycopg
from eventsourcing.persistence import InterfaceError, OperationalError
from litestar import Litestar, Request
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import ClientException, HTTPException, ValidationException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.opentelemetry import OpenTelemetryConfig, OpenTelemetryPlugin
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController

from application.origin import CallerSlot, current_caller, current_client
from application.ports import Overloaded, Unavailable
from domain.errors import DomainError, FieldError, Invalid
from infrastructure.tracing import SECRET_HEADERS, redact_request_span
from interfaces.container import Container
from interfaces.http.admin import AdminController
from interfaces.http.admin_clients import ClientsController
from interfaces.http.admin_webhooks import WebhooksController
from interfaces.http.audit import AuditController
from interfaces.http.auth import AuthController
from interfaces.http.consents import MyConsentsController
from interfaces.http.cors import cross_origin, rules
from interfaces.http.me import MeController
from interfaces.http.oauth2 import OAuth2Controller, provider_edge
from interfaces.http.oidc import MyIdentitiesController, OidcController
from interfaces.http.openapi import StrictStructSchemaPlugin
from interfaces.http.openapi_viewer import PATH as SCHEMA_PATH
from interfaces.http.openapi_viewer import docs_policy, render_plugins
from interfaces.http.passkeys import (
    MyPasskeysController,
    PasskeySignInController,
    ReauthenticationController,
)
from interfaces.http.problems import (
    domain_problem,
    http_problem,
    overloaded_problem,
    unavailable_problem,
    undecodable_problem,
    unexpected_problem,
    validation_problem,
)
from interfaces.http.request_log import request_log
from interfaces.http.security import ClientAddress
from interfaces.http.system import home, jwks, live, ready
from interfaces.pages import pages_router

MAX_BODY_BYTES = 64 * 1024
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class Metrics(PrometheusController):
    path = "/metrics"
    include_in_schema = False


async def require_json(request: Request[Any, Any, Any]) -> None:
    """415 for a body that is not JSON: never guess a client's meaning from another format."""
    if request.method not in _BODY_METHODS or request.route_handler.opt.get("form_body"):
        return  # the OpenID Provider's endpoints take forms, as RFC 6749 has them
    has_body = request.headers.get("content-length", "0") != "0" or (
        "transfer-encoding" in request.headers
    )
    media_type, _ = request.content_type
    if has_body and media_type != "application/json":
        raise HTTPException(status_code=415, detail="Send the body as application/json.")


def refuse_unknown_query_parameters(request: Request[Any, Any, Any]) -> None:
    """A query parameter the endpoint does not take is refused, as an unknown body field is:
    a misspelt filter must not silently widen an audit query."""
    if not request.query_params:
        return
    if request.route_handler.opt.get("any_query"):
        return  # a provider's redirect back carries parameters of the provider's choosing
    known = request.route_handler.parsed_fn_signature.parameters
    unknown = sorted(name for name in request.query_params if name not in known)
    if unknown:
        raise Invalid(
            *(
                FieldError(name, "unknown", "is not a parameter of this endpoint")
                for name in unknown
            )
        )


async def decode_strictly(request: Request[Any, Any, Any]) -> None:
    """The body must be its schema's type exactly: Litestar converts bodies leniently (`1` or
    `"true"` for a boolean, `"5"` for an integer), which the served schema does not allow and a
    client should not rely on. Found by the fuzzer: `{"all_sessions": 1}` logged out all."""
    field = getattr(request.route_handler, "parsed_data_field", None)
    if request.method not in _BODY_METHODS or field is None:
        return
    body = await request.body()  # kept by the request: the handler reads it again
    if not body:
        return
    try:
        msgspec.json.decode(body, type=field.annotation, strict=True)
    except msgspec.ValidationError as error:
        raise ValidationException(
            detail="The request is invalid.", extra=[{"message": str(error), "key": ""}]
        ) from None
    except (msgspec.DecodeError, UnicodeDecodeError):
        raise ClientException(detail="The request body is not valid UTF-8 JSON.") from None


def refuse_repeated_parameters(request: Request[Any, Any, Any]) -> None:
    """A query parameter given twice is refused (400): no endpoint takes a list, and which copy
    counts would be a guess that a proxy or firewall in front may guess differently (HTTP
    parameter pollution). Found by the fuzzer: `cursor=2.7e242&cursor=0.0` was answered 200."""
    seen: set[str] = set()
    for name, _ in request.query_params.multi_items():
        if name in seen:
            raise Invalid(FieldError(name, "repeated", "must be given at most once"))
        seen.add(name)


def create_app(container: Container, run_background: bool = True) -> Litestar:
    def provide(value: object) -> Provide:
        return Provide(lambda: value, use_cache=True, sync_to_thread=False)

    client_address = ClientAddress(container.settings.trusted_proxies)

    def attribute(request: Request[Any, Any, Any]) -> None:
        # The events this request records will name the client it came from (audit trail).
        current_client.set(client_address.of(request))
        current_caller.set(CallerSlot())
        refuse_repeated_parameters(request)

    async def before_request(request: Request[Any, Any, Any]) -> None:
        attribute(request)
        await require_json(request)
        refuse_unknown_query_parameters(request)
        await decode_strictly(request)

    prometheus = PrometheusConfig(app_name="tessera", prefix="tessera", group_path=True)

    async def start() -> None:
        # Litestar runs synchronous handlers in the loop's default executor, which asyncio sizes
        # at min(32, cores + 4): 6 threads on 2 cores. Logins waiting for a hash slot held them
        # all, so the gate's queue never filled (no 503s) and /api/users/me queued behind them.
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(container.request_threads, thread_name_prefix="tessera-request")
        )
        if run_background:
            container.start_background()

    provider = provider_edge(container)
    # `/` is the pages' (to the sign-in page or the account), else a pointer to the API docs.
    pages = (
        [pages_router(container, provider.server, before_request=attribute)]
        if container.settings.pages_enabled
        else [home]
    )
    return Litestar(
        route_handlers=[
            *pages,
            AuthController,
            MeController,
            MyPasskeysController,
            PasskeySignInController,
            ReauthenticationController,
            OidcController,
            MyIdentitiesController,
            MyConsentsController,
            AuditController,
            AdminController,
            ClientsController,
            WebhooksController,
            OAuth2Controller,
            jwks,
            live,
            ready,
            Metrics,
        ],
        dependencies={
            "registration": provide(container.registration),
            "logins": provide(container.login),  # not "login": a body field has that name
            "sessions": provide(container.sessions),
            "profile": provide(container.profile),
            "passwords": provide(container.passwords),
            "mfa": provide(container.mfa),
            "reauthentication": provide(container.reauthentication),
            "passkeys": provide(container.passkeys),
            "external_sign_in": provide(container.external_sign_in),
            "settings": provide(container.settings),
            "access": provide(container.access),
            "administration": provide(container.administration),
            "clients": provide(container.clients),
            "consents": provide(container.consents),
            "webhooks": provide(container.webhooks),
            "replays": provide(container.replays),
            "webhook_deliveries": provide(container.webhook_deliveries),
            "machine_tokens": provide(container.machine_tokens),
            "claim_signer": provide(container.claim_signer),
            "openid_provider": provide(provider),
            "erasure": provide(container.erasure),
            "personal_data": provide(container.personal_data),
            "read_side": provide(container.read_side),
            "history": provide(container.history),
            "signer": provide(container.signer),
            "readiness": provide(container.readiness),
            "throttle": provide(container.throttle),
            "client": Provide(client_address.of, sync_to_thread=False),
        },
        before_request=before_request,
        exception_handlers={
            DomainError: domain_problem,
            ValidationException: validation_problem,
            HTTPException: http_problem,
            UnicodeDecodeError: undecodable_problem,
            Unavailable: unavailable_problem,
            # Any store that did not answer outside the event log's own guard: still a 503.
            OperationalError: unavailable_problem,
            InterfaceError: unavailable_problem,
            psycopg.OperationalError: unavailable_problem,
            psycopg.InterfaceError: unavailable_problem,
            Overloaded: overloaded_problem,
            Exception: unexpected_problem,
        },
        middleware=[
            cross_origin(
                rules(
                    container.settings.cors_origins,
                    container.client_origins.allows,
                    container.client_origins.allows_for,
                )
            ),
            docs_policy,
            request_log,
            prometheus.middleware,
        ],
        plugins=[
            OpenTelemetryPlugin(
                OpenTelemetryConfig(
                    exclude=["/metrics", "/health"],
                    # A span per ASGI message (the body received, the head and the body sent)
                    # only repeats the request's own, for about a tenth of /me's CPU.
                    exclude_spans=["receive", "send"],
                    # No token reaches a trace backend: the query strings of the mail links and
                    # of the provider sign-in's redirects hold one-time secrets.
                    server_request_hook_handler=redact_request_span,
                    http_capture_headers_sanitize_fields=SECRET_HEADERS,
                )
            ),
            StrictStructSchemaPlugin(),
        ],
        request_max_body_size=MAX_BODY_BYTES,
        # What the hottest handlers read from the app's state rather than as dependencies: two
        # dependencies at one depth cost Litestar a task group per request (interfaces/http/me.py).
        state=State(
            {
                "profile": container.profile,
                "openid_provider": provider,
            }
        ),
        on_startup=[start],
        on_shutdown=[container.close],
        openapi_config=OpenAPIConfig(
            title="Tessera",
            version="0.1.0",
            description="An event-sourced authentication service.",
            path=SCHEMA_PATH,
            render_plugins=render_plugins(),
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT")
                }
            ),
        ),
        debug=False,
        logging_config=None,  # the process configures logging (JSON lines), not the framework
    )
