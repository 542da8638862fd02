"""The peer: a conventional CRUD auth service (fastapi-users, bench/peer_app/app.py) served the
way its documentation serves it, on the benchmark's own PostgreSQL, so that tessera's "who am I"
is measured beside another service's in the same run.

It lives in a virtualenv of its own (bench/.peer-venv, git-ignored), which this module makes
and fills from bench/peer_app/requirements.txt the first time: fastapi-users is never a
dependency of tessera.
"""

from __future__ import annotations

import hashlib
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx

from bench.service import Server, running
from tests.servers import free_port

APP = Path(__file__).parent / "peer_app"
VENV = Path(__file__).parent / ".peer-venv"
REQUIREMENTS = APP / "requirements.txt"
ME_PATH = "/users/me"
BARE_PATH = "/health"


def email(n: int) -> str:
    """The peer's n-th seeded user (bench/peer_app/app.py); pydantic's email check refuses
    special-use domains such as .test."""
    return f"user{n}@bench.example.com"


def install() -> Path:
    """The peer's virtualenv, made or brought up to requirements.txt: its bin directory."""
    bin_dir = VENV / "bin"
    stamp = VENV / ".installed"
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == wanted:
        return bin_dir
    print(f"   installing the peer into {VENV}", flush=True)
    if not (bin_dir / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "install", "--quiet", "-r", str(REQUIREMENTS)],
        check=True,
    )
    stamp.write_text(wanted)
    return bin_dir


def asyncpg_url(database_url: str) -> str:
    """SQLAlchemy's spelling of the same database, through asyncpg."""
    return database_url.replace("postgresql://", "postgresql+asyncpg://", 1)


def _env(bin_dir: Path, database_url: str) -> dict[str, str]:
    """Nothing of tessera's environment (its virtualenv, its settings), only the peer's own."""
    return {
        "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin",
        "PEER_DATABASE_URL": asyncpg_url(database_url),
    }


def seed(bin_dir: Path, database_url: str, count: int, password: str) -> float:
    """COUNT users (one precomputed hash, batched inserts): the seconds it took."""
    started = time.monotonic()
    subprocess.run(
        [str(bin_dir / "python"), str(APP / "app.py"), "seed", str(count), password],
        env=_env(bin_dir, database_url),
        check=True,
    )
    return time.monotonic() - started


@contextmanager
def serve(bin_dir: Path, database_url: str, workers: int, log_path: Path) -> Iterator[Server]:
    """uvicorn with N workers, as its documentation runs it, but for two things `tessera serve`
    does too (bench/peer_app/serve.py): no access log, and a listening socket per worker."""
    port = free_port()
    command = [str(bin_dir / "python"), str(APP / "serve.py"), str(port), str(workers)]
    env = _env(bin_dir, database_url)
    with running(command, env, port, log_path, _answers) as server:
        yield server


def _answers(url: str) -> bool:
    return httpx.get(url + BARE_PATH, timeout=5).status_code == 200


def sign_in(server: Server, accounts: int, sessions: int, password: str, tokens: Path) -> Path:
    """Real logins (fastapi-users' form login) of distinct random users: a file of their
    access tokens, one a line, as tessera's /me scenario has."""
    picks = random.sample(range(accounts), min(sessions, accounts))

    def log_in(n: int) -> str:
        answer = http.post("/auth/jwt/login", data={"username": email(n), "password": password})
        if answer.status_code != 200:
            raise RuntimeError(f"peer login of user{n}: {answer.status_code} {answer.text}")
        token: str = answer.json()["access_token"]
        return token

    with httpx.Client(base_url=server.url, timeout=60) as http, ThreadPoolExecutor(4) as pool:
        tokens.write_text("".join(t + "\n" for t in pool.map(log_in, picks)))
    return tokens
