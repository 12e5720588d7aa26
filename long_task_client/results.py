"""The commands that read results back: errors, rows, export and download. A download goes to
standard output, or to a file that is written whole or not at all: the answer's status is
checked before the file is made, the bytes go to a temporary file beside it, renamed over it
once complete and removed if anything fails (an error page never lands in the file)."""

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from long_task_client.api import Api, ApiError, Unreachable
from long_task_client.control import withdraw
from long_task_client.display import for_output
from long_task_client.following import follow
from long_task_client.output import UsageError, out, say_error
from long_task_shared import humanize, outcome


def cmd_errors(api: Api, args) -> int:
    if args.csv:
        return save(api, f"/api/operations/{args.op_id}/row-errors/", {"format": "csv"}, args.output)
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
    return save(api, f"/api/operations/{args.op_id}/rows/", {"format": args.format}, args.output)


def cmd_export(api: Api, args) -> int:
    """Register an Export of the source's rows, start it, follow it to the end, download its file."""
    match = dict(args.filter or [])
    if len(match) < len(args.filter or []):
        raise UsageError("--filter names a column twice (a row has one value in each column)")
    op_id = api.register("Export", source=args.source, **({"filter": match} if match else {}))["op_id"]
    # Standard output may be the file: the progress goes to standard error.
    display = for_output(sys.stderr)
    display.line(f"operation {op_id}: exporting the rows of operation {args.source}")
    try:
        api.start_without_input(op_id)
    except (ApiError, Unreachable, KeyboardInterrupt) as exc:
        display.stop()
        return withdraw(api, op_id, exc, what="export")
    code = follow(api, op_id, display, interval=args.interval, reached=True, next_steps=False)
    if code != outcome.COMPLETED:
        return code
    try:
        return save(api, _file_of(op_id), {}, args.output)
    except (ApiError, Unreachable):
        say_error(f"operation {op_id} completed; its file: long-task download {op_id} -o FILE")
        raise


def cmd_download(api: Api, args) -> int:
    try:
        return save(api, _file_of(args.op_id), {}, args.output)
    except ApiError as exc:
        if exc.status_code == 409 and not exc.hint:
            exc.hint = f"long-task status {args.op_id} says where it is"
        raise


def _file_of(op_id: int) -> str:
    return f"/api/operations/{op_id}/download/"


def _lines(body: Iterator[bytes]) -> Iterator[str]:
    pending = b""
    for chunk in body:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        yield from (line.decode() for line in complete if line)
    if pending:
        yield pending.decode()


def save(api: Api, path: str, params: dict, output: str | None) -> int:
    """Stream a download to standard output, or to a file (written whole or not at all)."""
    if output is None:
        with api.download(path, params) as body:
            for chunk in body:
                sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
        return outcome.COMPLETED
    target = Path(output)
    with api.download(path, params) as body:  # raises on an error answer: no file is made
        written = _write_whole(body, target)
    say_error(f"wrote {output} ({humanize.size(written)})")
    return outcome.COMPLETED


def _write_whole(body: Iterator[bytes], target: Path) -> int:
    """Write into a temporary file beside `target` (so that the rename stays on one file
    system), then rename it over `target`; on any failure remove it and leave `target` as it was."""
    temporary = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        # O_EXCL: never write through a link or into somebody else's file; 0o666: the umask applies.
        file = os.fdopen(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb")
    except OSError as exc:
        raise UsageError(f"cannot write {target}: {exc.strerror}") from None
    try:
        with file:
            written = 0
            for chunk in body:
                file.write(chunk)
                written += len(chunk)
        os.replace(temporary, target)
    except BaseException as exc:
        temporary.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise UsageError(f"cannot write {target}: {exc.strerror}") from None
        raise
    return written
