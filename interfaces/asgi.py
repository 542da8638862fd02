"""The ASGI application factory that `tessera serve --workers N` hands to each server process."""

from __future__ import annotations

from collections.abc import Callable

from litestar import Litestar

from infrastructure.tracing import configure_tracing
from interfaces.container import Container, build
from interfaces.http.app import create_app
from interfaces.logs import configure_logging
from interfaces.settings import Settings, load_settings


def app(container: Callable[[Settings], Container] = build) -> Litestar:
    """`container`: how the app's container is built from the settings (the bench builds one
    with its own data keys: bench/plain_keys.py)."""
    settings = load_settings()
    configure_logging(
        settings.log_level,
        settings.log_file,
        log_format=settings.log_format,
        service_name=settings.otel_service_name,
    )
    configure_tracing(settings.otel_service_name, settings.otel_exporter_otlp_endpoint)
    return create_app(container(settings))
