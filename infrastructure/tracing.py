"""The process's OpenTelemetry SDK: OTLP export when an endpoint is configured, none otherwise;
and what keeps secrets out of the spans the HTTP instrumentation records."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

REDACTED = "REDACTED"
# Where the ASGI instrumentation writes the request's URL with its query string, in the old
# semantic conventions and the stable ones (OTEL_SEMCONV_STABILITY_OPT_IN) alike.
URL_ATTRIBUTES = ("http.url", "http.target", "url.full")
QUERY_ATTRIBUTES = ("url.query",)
# Headers that carry credentials: redacted should an operator capture headers in spans
# (OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_*).
SECRET_HEADERS = ["authorization", "proxy-authorization", "cookie", "set-cookie"]


def configure_tracing(service_name: str, otlp_endpoint: str | None) -> None:
    """Without an endpoint nothing is exported, and the API stays a no-op: no cost, no data.
    With one, the exporter also honours the standard OTEL_EXPORTER_OTLP_* variables (headers,
    timeouts, compression), as the SDK reads them."""
    if not otlp_endpoint:
        return
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    endpoint = otlp_endpoint.rstrip("/")
    if not endpoint.endswith("/v1/traces"):
        endpoint += "/v1/traces"
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    trace.set_tracer_provider(provider)


def redacted_query(query: str) -> str:
    """Every value replaced, the names kept (what a request asked for, not with what): the
    mail links' `token`, a provider's `code` and `state`, the pages' one-time `code`, and
    whatever a future endpoint takes in its URL, without a list to keep up to date."""
    if not query:
        return query
    parts = []
    for part in query.split("&"):
        name, equals, _ = part.partition("=")
        parts.append(f"{name}={REDACTED}" if equals else REDACTED)
    return "&".join(parts)


def redacted_url(url: str) -> str:
    path, question, query = url.partition("?")
    return f"{path}?{redacted_query(query)}" if question else path


def redact_request_span(span: trace.Span, scope: Mapping[str, Any]) -> None:
    """The ASGI instrumentation's server request hook: it runs once the server span has its
    attributes, before any exporter sees it. Bodies are never recorded by it."""
    if not span.is_recording():
        return
    attributes: Mapping[str, Any] = getattr(span, "attributes", None) or {}
    for name in URL_ATTRIBUTES:
        value = attributes.get(name)
        if isinstance(value, str) and "?" in value:
            span.set_attribute(name, redacted_url(value))
    for name in QUERY_ATTRIBUTES:
        value = attributes.get(name)
        if isinstance(value, str) and value:
            span.set_attribute(name, redacted_query(value))
