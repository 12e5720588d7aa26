"""`long-task`: upload CSV files to a long_task server and follow their imports (SPEC §12)."""

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import NoReturn

from rich.console import Console
from rich.table import Table

from long_task_client.api import DEFAULT_URL, Api, ApiError, Unreachable
from long_task_client.display import PlainDisplay, for_output, percent_text
from long_task_shared import humanize, outcome

STATES = ["registered", "queued", "running", "pausing", "paused", "completed", "failed", "terminating", "terminated"]
# How long a follow keeps trying when the server stops answering (a restart, say).
RECONNECT_SECONDS = 30.0
# The longest `wait` the server allows by default (LONG_TASK_MAX_WAIT_SECONDS).
ACK_WAIT_SECONDS = 10.0
# A long poll asks the server to answer when the status changes, within this many seconds
# (the server bounds it by its LONG_TASK_MAX_WAIT_SECONDS).
LONG_POLL_SECONDS = 8.0
# How often a follow asks at most while the operation moves: once a second, as curl's and dd's
# progress do (and `op_status --follow`). Twice a second doubled what followers cost the server
# for a display nobody reads faster. A change (a pause, the end) shows within the interval at
# worst, and at once when it lands during a long poll, as it does while nothing moves.
FOLLOW_INTERVAL_SECONDS = 1.0

EPILOG = """\
environment:
  LONG_TASK_URL     the server (default http://127.0.0.1:8000); --url overrides it
  LONG_TASK_TOKEN   an API token (`manage.py api_user NAME` prints one); --token overrides it

exit codes:
  0    completed (for commands that do not follow: done)
  1    the operation failed, or the server refused the request because of its state (409)
  2    the operation is paused or terminated
  3    usage or connection error: bad arguments, server unreachable, not authenticated,
       unknown operation, bad input (400, 401, 403, 404, 413) or an unexpected answer
  130  a second Ctrl-C while following: the operation is left as it is

While following (upload --follow, follow, resume --follow), Ctrl-C pauses the operation and
prints how to resume it; a second Ctrl-C leaves it as it is. Output that is not a terminal
gets plain lines instead of progress bars.
"""


class UsageError(Exception):
    """Bad arguments or a file that cannot be read: exit 3."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(outcome.USAGE, f"{self.prog}: error: {message}\n")


def positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be more than 0: {text!r}")
    return value


def operation_id(text: str) -> int:
    if not text.isascii() or not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"not an operation id: {text!r}")
    return int(text)


# --- output helpers ---------------------------------------------------------------------------


def out(text: str = "") -> None:
    print(text, flush=True)


def say_error(text: str) -> None:
    print(f"long-task: {text}", file=sys.stderr, flush=True)


def _when(value: str | None) -> str:
    if not value:
        return "-"
    return datetime.fromisoformat(value).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _took(status: dict) -> str:
    """` in 3m05s` from start to finish (pauses included), or nothing when unknown."""
    if not (status.get("started_at") and status.get("finished_at")):
        return ""
    seconds = (
        datetime.fromisoformat(status["finished_at"]) - datetime.fromisoformat(status["started_at"])
    ).total_seconds()
    return f" in {humanize.duration(seconds)}"


def report_end(status: dict, say: Callable[[str], None]) -> int:
    """The closing lines of a follow, and its exit code."""
    op_id, state = status["op_id"], status["state"]
    if state == "completed":
        failed = status["lines_failed"]
        imported = status["lines_finished"] - failed
        counts = f"{humanize.count(imported)} rows imported, {humanize.count(failed)} rejected"
        say(f"operation {op_id} completed{_took(status)}: {counts}")
        if failed:
            say(f"  the rejected rows: long-task errors {op_id}")
        say(f"  the rows: long-task rows {op_id} --format csv -o rows.csv")
    elif state == "failed":
        say(f"operation {op_id} failed after {humanize.count(status['lines_finished'])} rows: {status['error']}")
        say(f"  resume it: long-task resume {op_id} --follow   or give it up: long-task terminate {op_id}")
    elif state == "paused":
        say(f"operation {op_id} is paused after {humanize.count(status['lines_finished'])} rows")
        say(f"  resume it: long-task resume {op_id} --follow")
    elif state == "terminated":
        say(f"operation {op_id} was terminated: its rows and its file are deleted")
    return outcome.exit_code(state)


# --- following --------------------------------------------------------------------------------


def follow(api: Api, op_id: int, display, *, interval: float) -> int:
    """Show the progress until the operation stops moving; Ctrl-C pauses it."""
    try:
        try:
            status = _poll_until_end(api, op_id, display, interval=interval)
        except KeyboardInterrupt:
            return _pause_on_ctrl_c(api, op_id, display)
    finally:
        display.stop()
    return report_end(status, display.line)


def _poll_until_end(api: Api, op_id: int, display, *, interval: float) -> dict:
    """Ask at most every `interval` seconds; while nothing changes (queued, pausing, a slow
    chunk), one long poll waits for the change instead of asking again and again."""
    last_answer = time.monotonic()
    status, etag = None, None
    while True:
        try:
            # The first question is answered at once (no version to wait on yet: an operation
            # already finished would otherwise show nothing for a whole long poll).
            changed, etag = api.next_status(op_id, etag=etag, wait=LONG_POLL_SECONDS if etag else 0)
        except Unreachable as exc:
            if time.monotonic() - last_answer > RECONNECT_SECONDS:
                raise
            display.line(f"{exc}; trying again")
            time.sleep(max(interval, 1.0))
            continue
        last_answer = time.monotonic()
        if changed is not None:
            status = changed
            display.status(status)
            if outcome.exit_code(status["state"]) is not None:
                return status
        time.sleep(interval)


def _pause_on_ctrl_c(api: Api, op_id: int, display) -> int:
    display.line(f"Ctrl-C: pausing operation {op_id} (Ctrl-C again leaves it as it is)")
    try:
        try:
            status = api.pause(op_id, wait=ACK_WAIT_SECONDS)
        except ApiError as exc:
            if exc.status_code != 409:
                raise
            # It got somewhere first (completed, failed, paused by someone else...): say where.
            status = api.status(op_id)
        display.status(status)
        display.stop()
        if status["state"] in ("pausing", "paused"):
            return _paused(status, display.line)
        code = report_end(status, display.line)
        if code is None:  # terminating, say: not ours to wait for
            display.line(f"operation {op_id} is {status['state']}")
            return outcome.STOPPED
        return code
    except KeyboardInterrupt:
        display.stop()
        display.line(f"operation {op_id} left as it is")
        return outcome.INTERRUPTED


def _paused(status: dict, say: Callable[[str], None]) -> int:
    op_id, lines = status["op_id"], humanize.count(status["lines_finished"])
    if status["state"] == "paused":
        say(f"operation {op_id} paused after {lines} rows")
    else:
        say(f"operation {op_id} is {status['state']}: the worker stops at the end of its chunk")
    say(f"  resume it: long-task resume {op_id} --follow")
    return outcome.STOPPED


# --- commands ---------------------------------------------------------------------------------


def cmd_upload(api: Api, args) -> int:
    path = Path(args.file)
    try:
        handle = path.open("rb")
        total = os.fstat(handle.fileno()).st_size
    except OSError as exc:
        raise UsageError(f"cannot read {args.file}: {exc.strerror}") from None
    with handle:
        op_id = api.register(strict=args.strict)["op_id"]
        display = PlainDisplay() if args.json else for_output()
        if not args.json:
            display.upload_started(op_id, path.name, total)
        on_progress = (lambda done: None) if args.json else display.upload_progress
        try:
            started = api.start(op_id, handle, name=path.name, on_progress=on_progress)
        except (ApiError, Unreachable, KeyboardInterrupt) as exc:
            display.stop()
            _withdraw(api, op_id)
            if isinstance(exc, KeyboardInterrupt):
                say_error(f"upload interrupted; operation {op_id} withdrawn")
                return outcome.INTERRUPTED
            if isinstance(exc, ApiError) and not exc.hint:
                exc.hint = f"operation {op_id} withdrawn"
            raise
    if args.json:
        out(json.dumps(started, indent=2))
        return outcome.COMPLETED
    display.upload_finished()
    if not args.follow:
        display.stop()
        display.line(f"operation {op_id} started ({started['state']}); follow it: long-task follow {op_id}")
        return outcome.COMPLETED
    return follow(api, op_id, display, interval=args.interval)


def _withdraw(api: Api, op_id: int) -> None:
    """The upload did not go through: terminate the operation it registered, if it is still
    only registered (best effort: a second Ctrl-C or a lost server leaves it registered)."""
    with contextlib.suppress(ApiError, Unreachable, KeyboardInterrupt):
        api.terminate(op_id)


def cmd_follow(api: Api, args) -> int:
    return follow(api, args.op_id, for_output(), interval=args.interval)


def cmd_status(api: Api, args) -> int:
    status = api.status(args.op_id)
    if args.json:
        out(json.dumps(status, indent=2))
        return outcome.COMPLETED
    out(f"operation {status['op_id']} ({status['op_type']}): {status['state']}")
    total = status.get("total_lines")
    progress = f"{percent_text(status) or '-'}, {humanize.count(status['lines_finished'])} rows done"
    progress += f" of {humanize.count(total)}" if total is not None else ""
    progress += f", {humanize.count(status['lines_failed'])} rejected"
    out(f"  progress  {progress}")
    if status.get("rows_per_second"):
        speed = (
            f"{humanize.count(status['rows_per_second'])} rows/s, ETA {humanize.duration(status.get('eta_seconds'))}"
        )
        out(f"  speed     {speed}")
    if status.get("error"):
        out(f"  error     {status['error']}")
    out(f"  created   {_when(status.get('created_at'))}")
    out(f"  started   {_when(status.get('started_at'))}")
    out(f"  finished  {_when(status.get('finished_at'))}")
    return outcome.COMPLETED


def cmd_pause(api: Api, args) -> int:
    _paused(api.pause(args.op_id, wait=ACK_WAIT_SECONDS), out)
    return outcome.COMPLETED


def cmd_resume(api: Api, args) -> int:
    answer = api.resume(args.op_id)
    lines = humanize.count(answer["lines_finished"])
    if not args.follow:
        out(f"operation {args.op_id} resumed after {lines} rows ({answer['state']})")
        out(f"  follow it: long-task follow {args.op_id}")
        return outcome.COMPLETED
    display = for_output()
    display.line(f"operation {args.op_id} resumed after {lines} rows")
    return follow(api, args.op_id, display, interval=args.interval)


def cmd_terminate(api: Api, args) -> int:
    answer = api.terminate(args.op_id, force=args.force, wait=ACK_WAIT_SECONDS)
    if answer["state"] == "terminated":
        out(f"operation {args.op_id} terminated: its rows and its file are deleted")
    else:
        out(f"operation {args.op_id} is {answer['state']}: a worker is deleting its rows")
    return outcome.COMPLETED


LIST_COLUMNS = ["id", "type", "state", "percent", "rows", "rejected", "rows/s", "eta", "updated"]


def cmd_list(api: Api, args) -> int:
    ops = list(api.operations(state=args.state, limit=args.limit))
    if args.json:
        out(json.dumps(ops, indent=2))
        return outcome.COMPLETED
    rows = [
        [
            str(op["op_id"]),
            op["op_type"],
            op["state"],
            percent_text(op) or "-",
            humanize.count(op["lines_finished"]),
            humanize.count(op["lines_failed"]),
            humanize.count(op["rows_per_second"]),
            humanize.duration(op["eta_seconds"]),
            _when(op["updated_at"]),
        ]
        for op in ops
    ]
    console = Console(highlight=False)
    if console.is_terminal:
        table = Table(*LIST_COLUMNS, box=None, header_style="bold")
        for column in table.columns:
            column.justify = "left" if column.header in ("type", "state", "updated") else "right"
        for row in rows:
            table.add_row(*row)
        console.print(table if rows else "no operations")
    else:  # for scripts: tab-separated, no header (as gh does)
        for row in rows:
            out("\t".join(row))
    return outcome.COMPLETED


def cmd_errors(api: Api, args) -> int:
    if args.csv:
        return _save(api, f"/api/operations/{args.op_id}/row-errors/", {"format": "csv"}, args.output)
    shown = 0
    with api.download(f"/api/operations/{args.op_id}/row-errors/", {"format": "jsonl"}) as body:
        for line in _lines(body):
            error = json.loads(line)
            raw = error["raw"].replace("\r", "\\r").replace("\n", "\\n")
            out(f"line {error['line_number']}: {error['reason']}: {raw[:80]}")
            shown += 1
    if not shown:
        out(f"operation {args.op_id} has no row errors")
    return outcome.COMPLETED


def cmd_rows(api: Api, args) -> int:
    return _save(api, f"/api/operations/{args.op_id}/rows/", {"format": args.format}, args.output)


def _lines(body: Iterator[bytes]) -> Iterator[str]:
    pending = b""
    for chunk in body:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        yield from (line.decode() for line in complete if line)
    if pending:
        yield pending.decode()


def _save(api: Api, path: str, params: dict, output: str | None) -> int:
    """Stream a download to standard output, or to a file (written whole or not at all)."""
    if output is None:
        with api.download(path, params) as body:
            try:
                for chunk in body:
                    sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()
            except BrokenPipeError:  # `| head`: the reader has what it wanted
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return outcome.COMPLETED
    target = Path(output)
    partial = target.with_name(target.name + ".part")
    try:
        with api.download(path, params) as body, partial.open("wb") as file:
            written = 0
            for chunk in body:
                file.write(chunk)
                written += len(chunk)
        partial.replace(target)
    except OSError as exc:
        raise UsageError(f"cannot write {output}: {exc.strerror}") from None
    finally:
        partial.unlink(missing_ok=True)
    say_error(f"wrote {output} ({humanize.size(written)})")
    return outcome.COMPLETED


# --- the command line -------------------------------------------------------------------------


def build_parser() -> Parser:
    # The connection options are accepted before and after the command.
    common = Parser(add_help=False)
    common.add_argument("--url", default=argparse.SUPPRESS, help=f"the server (LONG_TASK_URL, default {DEFAULT_URL})")
    common.add_argument("--token", default=argparse.SUPPRESS, help="API token (LONG_TASK_TOKEN)")
    following = Parser(add_help=False)
    following.add_argument(
        "--interval",
        type=positive_number,
        default=FOLLOW_INTERVAL_SECONDS,
        metavar="SECONDS",
        help=f"how often to ask at most (default {FOLLOW_INTERVAL_SECONDS:g})",
    )

    parser = Parser(
        prog="long-task",
        description="Upload CSV files to a long_task server, follow, pause, resume or terminate their imports, "
        "and read back what they imported.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, handler, help: str, *, follows: bool = False) -> Parser:
        sub = commands.add_parser(
            name,
            help=help,
            description=help,
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            parents=[common, following] if follows else [common],
        )
        sub.set_defaults(handler=handler)
        return sub

    sub = command("upload", cmd_upload, "register an import and start it with FILE", follows=True)
    sub.add_argument("file", metavar="FILE", help="the CSV file")
    sub.add_argument("--strict", action="store_true", help="fail at the first bad row instead of skipping it")
    mode = sub.add_mutually_exclusive_group()
    mode.add_argument("--follow", action="store_true", help="show its progress until it ends (Ctrl-C pauses it)")
    mode.add_argument("--json", action="store_true", help="print the status object once started")

    sub = command("follow", cmd_follow, "show the progress of an operation until it ends", follows=True)
    sub.add_argument("op_id", type=operation_id, metavar="ID")

    sub = command("status", cmd_status, "show an operation's status")
    sub.add_argument("op_id", type=operation_id, metavar="ID")
    sub.add_argument("--json", action="store_true", help="the status object as JSON")

    sub = command("pause", cmd_pause, "pause an operation (waits for the worker's acknowledgement)")
    sub.add_argument("op_id", type=operation_id, metavar="ID")

    sub = command("resume", cmd_resume, "resume a paused or failed operation", follows=True)
    sub.add_argument("op_id", type=operation_id, metavar="ID")
    sub.add_argument("--follow", action="store_true", help="show its progress until it ends (Ctrl-C pauses it)")

    sub = command("terminate", cmd_terminate, "terminate an operation: delete its rows and its file")
    sub.add_argument("op_id", type=operation_id, metavar="ID")
    sub.add_argument("--force", action="store_true", help="also when it is running (default: pause it first)")

    sub = command("list", cmd_list, "list your operations, most recent first")
    sub.add_argument("--state", choices=STATES, help="only those in this state")
    sub.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    sub.add_argument("--json", action="store_true", help="the status objects as JSON")

    sub = command("errors", cmd_errors, "show the rows an import rejected, and why")
    sub.add_argument("op_id", type=operation_id, metavar="ID")
    sub.add_argument("--csv", action="store_true", help="all of them as CSV (line_number, reason, raw)")
    sub.add_argument("-o", "--output", metavar="FILE", help="with --csv: write to FILE instead of standard output")

    sub = command("rows", cmd_rows, "download the rows an import stored, in line order")
    sub.add_argument("op_id", type=operation_id, metavar="ID")
    sub.add_argument(
        "--format", choices=["csv", "jsonl"], default="csv", help="csv (with the header; default) or jsonl"
    )
    sub.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of standard output")
    return parser


def main(argv: list[str] | None = None) -> int:
    # A shell starts a background job (`long-task follow 7 &` in a script, a test suite run in
    # the background) with SIGINT ignored, and Python then installs no handler: `kill -INT`
    # would neither pause a follow nor withdraw an upload. Take it, as `manage.py run` does.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    args = build_parser().parse_args(argv)
    url = getattr(args, "url", None) or os.environ.get("LONG_TASK_URL") or DEFAULT_URL
    token = getattr(args, "token", None) or os.environ.get("LONG_TASK_TOKEN") or None
    if not url.startswith(("http://", "https://")):
        say_error(f"the server URL must start with http:// or https://: {url!r}")
        return outcome.USAGE
    api = Api(url, token)
    try:
        return args.handler(api, args)
    except UsageError as exc:
        say_error(str(exc))
        return outcome.USAGE
    except Unreachable as exc:
        say_error(f"{exc} (is the server running? set LONG_TASK_URL or --url)")
        return outcome.USAGE
    except ApiError as exc:
        say_error(exc.message + (f" ({exc.hint})" if exc.hint else ""))
        if exc.status_code == 401:
            say_error("set LONG_TASK_TOKEN or --token (`manage.py api_user NAME` prints a token)")
        if exc.status_code == 409 and args.command == "terminate" and exc.message == "Pause the operation":
            say_error(f"pause it first (long-task pause {args.op_id}), or terminate it running: --force")
        return outcome.REFUSED if exc.status_code == 409 else outcome.USAGE
    except KeyboardInterrupt:
        say_error("interrupted")
        return outcome.INTERRUPTED
    finally:
        api.close()
