"""Moves `application/` from one flat folder into packages by capability, and rewrites every
reference to a moved module: imports, dotted names in strings and prose, and file paths.

Idempotent: a module already moved is left where it is, and a reference already rewritten does
not match again, so it can be run again after a merge brings code written against the old layout
(then fix by hand what it reports). Run from anywhere inside the repository:

    python ops/dev/relayout.py            # git mv, rewrite, then ruff (import order, format)
    python ops/dev/relayout.py --check    # only list what still names an old module; exit 1 if any

Nothing here is imported by the service; it needs Python and git only (ruff if installed).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

# Old module (under application/) -> new module (under application/). A module that keeps its
# place (ports, views, origin, tokens, tracing) is not listed.
MOVES: dict[str, str] = {
    # Persistence mechanics: the event log and what stores and reads its events.
    "event_log": "persistence.event_log",
    "sealing": "persistence.sealing",
    "transcoding": "persistence.transcoding",
    "account_views": "persistence.account_views",
    "projection": "persistence.projection",
    "migration": "persistence.migration",
    # Sessions: a session's life once a sign-in has verified someone, and access tokens.
    "sessions": "sessions.lifecycle",
    "access": "sessions.access",
    # Factors: each way of proving who one is, and proving it again.
    "login": "factors.login",
    "passwords": "factors.passwords",
    "mfa": "factors.mfa",
    "recovery_codes": "factors.recovery_codes",
    "passkeys": "factors.passkeys",
    "external_sign_in": "factors.external_sign_in",
    "reauthentication": "factors.reauthentication",
    "throttle": "factors.throttle",
    # Accounts: registering, one's profile, and what operators do to accounts.
    "registration": "accounts.registration",
    "profile": "accounts.profile",
    "administration": "accounts.administration",
    # Mail derived from events.
    "mail": "mail.outbox",
    # The read side: projections into rows, and the queries over them.
    "read_batch": "read_side.read_batch",
    "read_models": "read_side.read_models",
    "queries": "read_side.queries",
    # Audit: the trail, its export, and the store's past.
    "trail": "audit.trail",
    "trail_export": "audit.trail_export",
    "history": "audit.history",
    # Privacy: erasure and the personal-data export.
    "erasure": "privacy.erasure",
    "personal_data": "privacy.personal_data",
}

# Each new package's docstring (its __init__.py holds nothing else: no re-exports).
PACKAGES: dict[str, str] = {
    "persistence": "The event log and the mechanics under it: sealing personal values, "
    "transcoding stored events,\nthe accounts each process has shown, what a projection is, "
    "and copying an old store into a sealed one.",
    "sessions": "A session's life once a sign-in has verified someone: started, refreshed, "
    "listed, ended; and\nwhether an access token still speaks for its session.",
    "factors": "Each way of proving who one is (a password, a second factor, recovery codes, "
    "passkeys, another\nidentity provider), proving it again before a sensitive change, and "
    "the rate limits on guessing.",
    "accounts": "Registering an account and verifying its address, one's own profile, and "
    "what operators do to\naccounts.",
    "mail": "Mail derived from events: which events mail whom, the outbox projection, and "
    "the postman.",
    "read_side": "The read side: projections that fold events into rows, and the queries "
    "answered from them.",
    "audit": "The audit trail: how an event reads in it, its hash-chained export, and the "
    "store's past.",
    "privacy": "A person's rights over their data: erasure (crypto-shredding) and the "
    "personal-data export.",
}

TEXT_SUFFIXES = {".py", ".md", ".toml", ".cfg", ".ini", ".txt", ".yml", ".yaml", ".sh", ".html"}
TEXT_NAMES = {"Makefile", "Dockerfile", ".importlinter", ".env.example", "compose.env.example"}
SKIP = {"ops/dev/relayout.py"}


def root() -> Path:
    out = subprocess.run(
        ["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True
    )
    return Path(out.stdout.strip())


def path_of(module: str) -> str:
    return "application/" + module.replace(".", "/") + ".py"


def move(repo: Path) -> list[str]:
    """git mv each module not yet moved; returns the conflicts (both old and new exist)."""
    conflicts = []
    for package, doc in PACKAGES.items():
        init = repo / "application" / package / "__init__.py"
        if not init.exists():
            init.parent.mkdir(parents=True, exist_ok=True)
            init.write_text(f'"""{doc}"""\n')
            subprocess.run(["git", "add", str(init)], cwd=repo, check=True)
    for old, new in MOVES.items():
        source, target = repo / path_of(old), repo / path_of(new)
        if source.exists() and target.exists():
            conflicts.append(f"both {path_of(old)} and {path_of(new)} exist: merge them by hand")
        elif source.exists():
            subprocess.run(["git", "mv", path_of(old), path_of(new)], cwd=repo, check=True)
    return conflicts


# A new module or package name that starts like an old module's (application.sessions is both
# the old module and the new package): a reference already rewritten must not match again.
_NEW = {f"application.{new}" for new in MOVES.values()} | {
    f"application.{package}" for package in PACKAGES
}

_FROM_PACKAGE = re.compile(r"^(?P<indent>[ \t]*)from application import (?P<names>[\w ,]+)$", re.M)


def _dotted(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        old, rest, imported = match.group(1), match.group(2) or "", match.group(3)
        if rest and f"application.{old}{rest}" in _NEW:
            return match.group(0)
        if imported and f"application.{old}.{imported}" in _NEW:
            return match.group(0)  # from application.mail import outbox
        if old in PACKAGES and not rest and not imported:
            return match.group(0)  # application.sessions alone: the package by now
        return f"application.{MOVES[old]}{rest}"

    names = "|".join(sorted(MOVES, key=len, reverse=True))
    return re.sub(
        rf"(?<![\w.])application\.({names})(?!\w)(\.\w+)?(?=\s+import\s+\(?\s*(\w+))?",
        replace,
        text,
    )


def _paths(text: str) -> str:
    # application/sessions.py, and application/sessions.Sessions as prose writes a name.
    names = "|".join(sorted(MOVES, key=len, reverse=True))
    return re.sub(
        rf"(?<![\w.])application/({names})(?=\.py\b|\.[A-Za-z_])",
        lambda m: "application/" + MOVES[m.group(1)].replace(".", "/"),
        text,
    )


def _from_package(text: str) -> str:
    """`from application import queries` -> `from application.read_side import queries`."""

    def replace(match: re.Match[str]) -> str:
        lines = []
        for part in match.group("names").split(","):
            name, _, alias = (word.strip() for word in part.strip().partition(" as "))
            new = MOVES.get(name)
            if new is None:
                lines.append(f"from application import {part.strip()}")
                continue
            package, _, module = new.rpartition(".")
            bound = alias or name
            suffix = "" if bound == module else f" as {bound}"
            lines.append(f"from application.{package} import {module}{suffix}")
        return "\n".join(match.group("indent") + line for line in lines)

    return _FROM_PACKAGE.sub(replace, text)


def rewrite(text: str) -> str:
    return _from_package(_paths(_dotted(text)))


def text_files(repo: Path) -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=repo, capture_output=True, text=True, check=True)
    files = []
    for name in out.stdout.splitlines():
        path = repo / name
        if name in SKIP or not path.is_file():
            continue
        if path.suffix in TEXT_SUFFIXES or path.name in TEXT_NAMES:
            files.append(path)
    return files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; list old names")
    args = parser.parse_args()
    repo = root()
    conflicts: list[str] = [] if args.check else move(repo)
    changed = []
    for path in text_files(repo):
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        new = rewrite(text)
        if new != text:
            changed.append(path)
            if not args.check:
                path.write_text(new)
    for path in changed:
        print(("names an old module: " if args.check else "rewrote ") + str(path.relative_to(repo)))
    python = [str(path) for path in changed if path.suffix == ".py"]
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if python and ruff and not args.check:
        # Moved imports change their sorted place, and a longer name may need a wrapped line.
        subprocess.run([ruff, "check", "--select", "I", "--fix", "--quiet", *python], cwd=repo)
        subprocess.run([ruff, "format", "--quiet", *python], cwd=repo)
    for conflict in conflicts:
        print("CONFLICT: " + conflict, file=sys.stderr)
    if args.check:
        return 1 if changed else 0
    return 1 if conflicts else 0


if __name__ == "__main__":
    sys.exit(main())
