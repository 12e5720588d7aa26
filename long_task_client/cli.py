"""`long-task`: upload CSV files to a long_task server, follow their imports and read back what
they stored (SPEC §12). The command line and the exit codes; the commands are in control.py
(start, follow, steer) and results.py (errors, rows, export, download)."""

import argparse
import os
import re
import signal
import sys
from typing import NoReturn

from long_task_client.api import DEFAULT_URL, Api, ApiError, Unreachable
from long_task_client.control import (
    STATES,
    cmd_follow,
    cmd_import,
    cmd_list,
    cmd_pause,
    cmd_resume,
    cmd_status,
    cmd_terminate,
)
from long_task_client.following import FOLLOW_INTERVAL_SECONDS, LONG_POLL_SECONDS
from long_task_client.output import UsageError, say_error
from long_task_client.results import cmd_download, cmd_errors, cmd_export, cmd_rows
from long_task_client.tus import DEFAULT_CHUNK_BYTES
from long_task_client.uploading import cmd_upload
from long_task_shared import outcome

# A token is 40 characters; a file much longer is not a token file.
TOKEN_FILE_MAX_CHARS = 4096

# What the bench's followers stand for (tests/processes/test_bench.py compares them).
__all__ = ["FOLLOW_INTERVAL_SECONDS", "LONG_POLL_SECONDS", "build_parser", "main"]

EPILOG = """\
environment:
  LONG_TASK_URL     the server (default http://127.0.0.1:8000); --url overrides it
  LONG_TASK_TOKEN   an API token (`manage.py api_user NAME` prints one); --token-file FILE,
                    a file that holds only the token, overrides it. --token TOKEN does too,
                    but shows the token to every user of this machine (ps): prefer the others.
                    The token goes to the server of LONG_TASK_URL only (a next page or a
                    redirect elsewhere is not followed).

exit codes:
  0    completed (for commands that do not follow: done)
  1    the operation failed, or the server refused the request because of its state (409)
  2    the operation is paused or terminated
  3    usage or connection error: bad arguments, server unreachable, not authenticated,
       unknown operation, bad input (400, 401, 403, 404, 413) or an unexpected answer
  130  a second Ctrl-C while following: the client stops waiting for the pause

While following (upload --follow, follow, resume --follow, export), Ctrl-C pauses the operation
and prints how to resume it; a second Ctrl-C stops waiting for the worker to acknowledge the
pause and says how far it got. Output that is not a terminal gets plain lines instead of
progress bars.
"""


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


SIZE_PATTERN = re.compile(r"(\d+)\s*([kmg]i?)?b?", re.IGNORECASE)
SIZE_UNITS = {None: 1, "k": 1000, "m": 1000**2, "g": 1000**3, "ki": 1024, "mi": 1024**2, "gi": 1024**3}


def byte_size(text: str) -> int:
    """`50MB`, `8M`, `4MiB`, `1000000`: a size in bytes (k, M, G are powers of 1000)."""
    match = SIZE_PATTERN.fullmatch(text.strip()) if text.isascii() else None
    if match is None or int(match[1]) == 0:
        raise argparse.ArgumentTypeError(f"not a size (e.g. 50MB, 8M, 4MiB): {text!r}")
    return int(match[1]) * SIZE_UNITS[match[2] and match[2].lower()]


def operation_id(text: str) -> int:
    if not text.isascii() or not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"not an operation id: {text!r}")
    return int(text)


def column_value(text: str) -> tuple[str, str]:
    column, equals, value = text.partition("=")
    if not (equals and column):
        raise argparse.ArgumentTypeError(f"not COLUMN=VALUE: {text!r}")
    return column, value


def build_parser() -> Parser:
    # The connection options are accepted before and after the command.
    common = Parser(add_help=False)
    common.add_argument("--url", default=argparse.SUPPRESS, help=f"the server (LONG_TASK_URL, default {DEFAULT_URL})")
    common.add_argument(
        "--token", default=argparse.SUPPRESS, help="API token (shown by ps: prefer LONG_TASK_TOKEN or --token-file)"
    )
    common.add_argument(
        "--token-file", default=argparse.SUPPRESS, metavar="FILE", help="read the API token from FILE (LONG_TASK_TOKEN)"
    )
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

    def output_option(sub: Parser, help: str = "write to FILE instead of standard output") -> None:
        sub.add_argument("-o", "--output", metavar="FILE", help=help + " (written whole or not at all)")

    sub = command("upload", cmd_upload, "register an import and start it with FILE", follows=True)
    sub.add_argument("file", metavar="FILE", help="the CSV file")
    sub.add_argument("--strict", action="store_true", help="fail at the first bad row instead of skipping it")
    sub.add_argument("--target", metavar="NAME", help="import into this target's table (e.g. contacts)")
    sub.add_argument("--mapping", metavar="JSON", help="the file's columns to the target's fields, as a JSON object")
    sub.add_argument(
        "--dry-run",
        action="store_true",
        help="only check every row as the import would (nothing stored but the rejected rows and the totals); "
        "then `long-task import ID` imports the same stored file",
    )
    sub.add_argument(
        "--chunk-size",
        type=byte_size,
        default=DEFAULT_CHUNK_BYTES,
        metavar="SIZE",
        help="send a bigger file in pieces of SIZE, resumable (default 50MB; a file up to SIZE goes in one request)",
    )
    sub.add_argument(
        "--checksum",
        action="store_true",
        help="send each piece with its checksum, when the server offers it (tus checksum: SHA-256, SHA-1)",
    )
    sub.add_argument(
        "--resume",
        action="store_true",
        help="continue the unfinished upload of FILE (the same command without it does too, when there is one)",
    )
    mode = sub.add_mutually_exclusive_group()
    mode.add_argument("--follow", action="store_true", help="show its progress until it ends (Ctrl-C pauses it)")
    mode.add_argument("--json", action="store_true", help="print the status object once started")

    sub = command(
        "import", cmd_import, "import the file a completed dry run checked, without sending it again", follows=True
    )
    sub.add_argument("op_id", type=operation_id, metavar="ID", help="the id of a completed dry run")
    mode = sub.add_mutually_exclusive_group()
    mode.add_argument("--follow", action="store_true", help="show its progress until it ends (Ctrl-C pauses it)")
    mode.add_argument("--json", action="store_true", help="print the new operation's status object")

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
    output_option(sub, "with --csv: write to FILE instead of standard output")

    sub = command("rows", cmd_rows, "download the rows an import stored, in line order")
    sub.add_argument("op_id", type=operation_id, metavar="ID")
    sub.add_argument(
        "--format", choices=["csv", "jsonl"], default="csv", help="csv (with the header; default) or jsonl"
    )
    output_option(sub)

    sub = command(
        "export",
        cmd_export,
        "export a completed import's rows to a CSV file (register, follow, download)",
        follows=True,
    )
    sub.add_argument("source", type=operation_id, metavar="SOURCE", help="the id of a completed Upload")
    sub.add_argument(
        "--filter",
        type=column_value,
        action="append",
        metavar="COLUMN=VALUE",
        help="only the rows whose COLUMN equals VALUE (repeatable: all of them must match)",
    )
    output_option(sub)

    sub = command("download", cmd_download, "download an operation's file (an Export's result)")
    sub.add_argument("op_id", type=operation_id, metavar="ID")
    output_option(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # A shell starts a background job (`long-task follow 7 &` in a script, a test suite run in
    # the background) with SIGINT ignored, and Python then installs no handler: `kill -INT`
    # would neither pause a follow nor withdraw an upload. Take it, as `manage.py run` does.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        args = build_parser().parse_args(argv)
        return run(args)
    except BrokenPipeError:
        # `long-task list | head`: the reader has what it wanted. Stop quietly, as gh does;
        # what is still buffered goes nowhere instead of failing again at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.dup2(devnull, sys.stderr.fileno())
        return outcome.COMPLETED


def read_token_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read(TOKEN_FILE_MAX_CHARS).strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the token file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if not text:
        raise UsageError(f"no token in {path}")
    return text


def token_of(args: argparse.Namespace) -> str | None:
    """The API token: --token, else the one in --token-file, else LONG_TASK_TOKEN (None: none)."""
    given, path = getattr(args, "token", None), getattr(args, "token_file", None)
    if given is not None and path is not None:
        raise UsageError("give --token or --token-file, not both")
    if given is not None:
        say_error("warning: --token shows the token to every user of this machine (ps); prefer --token-file FILE")
        token, source = given, "--token"
    elif path is not None:
        token, source = read_token_file(path), path
    else:
        token, source = os.environ.get("LONG_TASK_TOKEN") or None, "LONG_TASK_TOKEN"
    # What goes into a header: no line breaks, no spaces, nothing httpx cannot encode.
    if token is not None and not (token.isascii() and token.isprintable() and " " not in token):
        raise UsageError(f"{source} does not hold one token (printable ASCII, no spaces)")
    return token


def run(args: argparse.Namespace) -> int:
    url = getattr(args, "url", None) or os.environ.get("LONG_TASK_URL") or DEFAULT_URL
    if not url.startswith(("http://", "https://")):
        say_error(f"the server URL must start with http:// or https://: {url!r}")
        return outcome.USAGE
    try:
        token = token_of(args)
    except UsageError as exc:
        say_error(str(exc))
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
            say_error("set LONG_TASK_TOKEN or --token-file (`manage.py api_user NAME` prints a token)")
        if exc.status_code == 409 and args.command == "terminate" and exc.message == "Pause the operation":
            say_error(f"pause it first (long-task pause {args.op_id}), or terminate it running: --force")
        return outcome.REFUSED if exc.status_code == 409 else outcome.USAGE
    except KeyboardInterrupt:
        say_error("interrupted")
        return outcome.INTERRUPTED
    finally:
        api.close()
