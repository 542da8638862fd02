"""A span per use case (OpenTelemetry's API only: a no-op until the process configures an SDK)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from opentelemetry import trace

P = ParamSpec("P")
R = TypeVar("R")

tracer = trace.get_tracer("tessera.application")


def traced(use_case: Callable[P, R]) -> Callable[P, R]:
    name = use_case.__qualname__
    if inspect.iscoroutinefunction(use_case):

        @functools.wraps(use_case)
        async def run_async(*args: P.args, **kwargs: P.kwargs) -> Any:
            with tracer.start_as_current_span(name):
                return await use_case(*args, **kwargs)

        return run_async  # type: ignore[return-value]

    @functools.wraps(use_case)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        with tracer.start_as_current_span(name):
            return use_case(*args, **kwargs)

    return run
