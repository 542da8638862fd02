"""The argon2 bound: how many `PasswordHasher.verify` calls per second this machine does with
the service's parameters, one process per core, measured in the same run as the load.

A login verifies exactly one hash, so no server can log people in faster than this; the
login and registration figures are reported as a share of it.
"""

from __future__ import annotations

import multiprocessing
import time

from argon2 import PasswordHasher, Type

from interfaces.settings import Settings

_PASSWORD = "bench password, verified in a loop"


def _hasher(settings: Settings) -> PasswordHasher:
    return PasswordHasher(
        time_cost=settings.argon2_time_cost,
        memory_cost=settings.argon2_memory_cost,
        parallelism=settings.argon2_parallelism,
        type=Type.ID,
    )


def _verify_until(
    encoded: str, parameters: tuple[int, int, int], start: float, end: float
) -> float:
    time_cost, memory_cost, parallelism = parameters
    hasher = PasswordHasher(
        time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism, type=Type.ID
    )
    while time.time() < start:
        time.sleep(0.001)
    began = time.time()
    done = 0
    while time.time() < end:
        hasher.verify(encoded, _PASSWORD)
        done += 1
    return done / (time.time() - began)


def verifies_per_second(settings: Settings, processes: int, seconds: float) -> float:
    """Sum of each process's verifies per second, all starting together."""
    encoded = _hasher(settings).hash(_PASSWORD)
    parameters = (
        settings.argon2_time_cost,
        settings.argon2_memory_cost,
        settings.argon2_parallelism,
    )
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes) as pool:
        start = (
            time.time() + 2.0
        )  # every process spawned and its imports done before the clock runs
        rates = pool.starmap(
            _verify_until, [(encoded, parameters, start, start + seconds)] * processes
        )
    return sum(rates)
