"""`tessera audit ...`: an account's history and its state at an instant, the whole trail
exported as hash-chained JSON Lines (or as ECS documents on the same chain), and an export
verified. Read-only, on the server's settings.

Exit codes: 0 done (verify: the chain holds), 1 verify found a bad line (or the store could not
be read), 2 bad input (unknown account, unparsable time, unreadable file).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import os
import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO
from uuid import UUID

from application.audit.history import History
from application.audit.trail import TrailEntry
from application.audit.trail_export import canonical, chained
from application.persistence.event_log import LogHeldBack
from application.views import json_ready
from domain.errors import AccountNotFound
from interfaces import ecs_trail
from interfaces.progress import Advance, progress
from interfaces.settings import Settings, load_settings

PROGRESS_EVERY = 1000  # store positions between two progress updates; lines a write


class BadInput(Exception):
    """Shown to the user as it is, with exit code 2."""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = commands.add_parser(
        "audit", help="replay an account, its state at an instant, export and verify the trail"
    )
    audit.set_defaults(run=run)
    actions = audit.add_subparsers(dest="audit_command", required=True)

    replay = actions.add_parser("replay", help="an account's own events, oldest first")
    replay.add_argument("--account", required=True, metavar="ID_OR_LOGIN")
    replay.add_argument("--format", choices=("text", "jsonl"), default="text")

    state = actions.add_parser("state", help="an account as it was at an instant (JSON)")
    state.add_argument("--account", required=True, metavar="ID_OR_LOGIN")
    state.add_argument("--as-of", required=True, type=instant, metavar="ISO8601")

    export = actions.add_parser(
        "export",
        help="the whole trail as hash-chained JSON Lines (or ECS documents), in store order",
    )
    export.add_argument(
        "--since",
        type=instant,
        metavar="ISO8601",
        help="only events at or after this time; the chain then starts afresh at that line",
    )
    export.add_argument(
        "--format",
        choices=("jsonl", "ecs"),
        default="jsonl",
        help="ecs: one Elastic Common Schema document per line, same hash chain",
    )
    export.add_argument("--output", type=Path, metavar="FILE", help="write here, not to stdout")

    verify = actions.add_parser("verify", help="check an export's hash chain (either format)")
    verify.add_argument("file", metavar="FILE", help="an export, or - for stdin")


def instant(text: str) -> datetime:
    """An ISO 8601 time; one without an offset is taken as UTC."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO 8601 time: {text!r} (e.g. 2026-01-31T12:00:00Z)"
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    if isinstance(sys.stdout, io.TextIOWrapper):
        # The chain hashes UTF-8 text with \n line ends: write exactly that, whatever the locale.
        sys.stdout.reconfigure(encoding="utf-8", newline="\n")
    try:
        if args.audit_command == "verify":
            return verify(args.file)
        return _with_history(args, settings)
    except BadInput as error:
        print(f"tessera audit: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`... | head`): stop quietly, as other command-line tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _with_history(args: argparse.Namespace, settings: Settings) -> int:
    from interfaces.container import build  # the store is opened only for commands that read it

    try:
        container = build(settings, create=False)
    except Exception as error:  # a database that does not answer: say so, without a traceback
        print(f"tessera audit: cannot open the event store: {error}", file=sys.stderr)
        return 1
    try:
        history = container.history
        if args.audit_command == "export":
            try:
                return export(history, args.since, args.output, container.log.end(), args.format)
            except LogHeldBack as error:
                print(f"tessera audit: the export stopped short: {error}", file=sys.stderr)
                return 1
        account_id = _account(history, args.account)
        if args.audit_command == "replay":
            events = container.log.recorder.select_events(account_id, desc=True, limit=1)
            with progress(
                "replay", events[0].originator_version if events else None, "events"
            ) as advance:
                for entry in history.replay(account_id):
                    line = _text(entry) if args.format == "text" else _json_line(entry)
                    sys.stdout.write(line + "\n")
                    advance(1)
        else:
            try:
                state = history.state_as_of(account_id, args.as_of)
            except AccountNotFound:
                raise BadInput(
                    f"account {args.account} was not registered yet at {args.as_of.isoformat()}"
                ) from None
            sys.stdout.write(json.dumps(json_ready(state), indent=2, ensure_ascii=False) + "\n")
        sys.stdout.flush()
        return 0
    finally:
        container.close()


def _account(history: History, id_or_login: str) -> UUID:
    try:
        return history.account_id(id_or_login)
    except AccountNotFound:
        raise BadInput(f"no account has the id, email or username {id_or_login!r}") from None


def export(
    history: History,
    since: datetime | None,
    output: Path | None,
    last: int,
    line_format: str = "jsonl",
) -> int:
    """Streams the chain line by line; into FILE through FILE.partial, renamed when complete,
    so an interrupted export never looks like a whole one."""
    with progress("export", last, "events") as advance:
        lines = chained(_advancing(history.trail(since), advance, last))
        if line_format == "ecs":
            lines = map(ecs_trail.document, lines)
        if output is None:
            _write(lines, sys.stdout)
            return 0
        partial = output.with_name(output.name + ".partial")
        try:
            with partial.open("w", encoding="utf-8", newline="\n") as file:
                _write(lines, file)
            partial.replace(output)
        except BaseException as error:
            partial.unlink(missing_ok=True)
            if isinstance(error, OSError):
                raise BadInput(f"cannot write {output}: {error.strerror}") from None
            raise
    return 0


def _advancing(entries: Iterable[TrailEntry], advance: Advance, last: int) -> Iterator[TrailEntry]:
    """The entries, the progress moved to each one's store position (events not in the trail,
    and those before --since, count as read) and to `last` at the end."""
    reached = 0
    for entry in entries:
        position = entry.position or reached
        if position - reached >= PROGRESS_EVERY:
            advance(position - reached)
            reached = position
        yield entry
    advance(last - reached)


def _write(lines: Iterator[str], out: TextIO) -> None:
    # Lines are joined a batch at a time: one write call per batch, not per line.
    for batch in iter(lambda: list(itertools.islice(lines, PROGRESS_EVERY)), []):
        out.write("\n".join(batch) + "\n")
    out.flush()


def verify(name: str) -> int:
    try:
        with contextlib.ExitStack() as stack:
            raw = sys.stdin.buffer if name == "-" else stack.enter_context(Path(name).open("rb"))
            # Undecodable bytes become U+FFFD, so the line they are on fails its hash.
            result = History.verify(_as_trail_line(line.decode("utf-8", "replace")) for line in raw)
    except OSError as error:
        raise BadInput(f"cannot read {name}: {error.strerror}") from None
    if result.ok:
        print(f"ok: {result.lines} lines")
        print(f"last hash: {result.last_hash}")
        return 0
    print(f"bad line {result.bad_line}: {result.reason}")
    return 1


def _as_trail_line(line: str) -> str:
    """An ECS document as the JSON Lines line it was made from; any other line as it is."""
    if '"ecs"' not in line:
        return line
    try:
        fields = json.loads(line)
    except ValueError:
        return line
    if not isinstance(fields, dict) or not ecs_trail.is_document(fields):
        return line
    try:
        return canonical(ecs_trail.trail_line(fields))
    except (AttributeError, TypeError):  # a document bent out of shape: it has no chain
        return "{}"


def _json_line(entry: TrailEntry) -> str:
    return json.dumps(json_ready(entry), ensure_ascii=False, separators=(",", ":"))


def _text(entry: TrailEntry) -> str:
    """time, type, details, and where it came from: one line per event, for people."""
    parts = [entry.time.isoformat(), entry.type]
    parts += [f"{key}={_word(value)}" for key, value in entry.details.items()]
    if entry.ip:
        parts.append(f"ip={entry.ip}")
    if entry.user_agent:
        parts.append(f"user_agent={_word(entry.user_agent)}")
    return "  ".join(parts[:2]) + ("  " + " ".join(parts[2:]) if parts[2:] else "")


def _word(value: Any) -> str:
    """A value as one word: quoted (JSON) when it has spaces, quotes or is not a string."""
    if isinstance(value, str) and value and not any(c.isspace() or c in "\"'=" for c in value):
        return value
    return json.dumps(value, ensure_ascii=False)
