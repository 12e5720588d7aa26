"""The commands that follow and steer operations, and show where they are: follow, status,
pause, resume, terminate, list (upload is uploading.py)."""

import contextlib
import json

from rich.console import Console
from rich.table import Table

from long_task_client.api import Api, ApiError, Unreachable
from long_task_client.display import for_output, percent_text
from long_task_client.following import ACK_WAIT_SECONDS, follow, pause_and_report
from long_task_client.output import now_iso, out, say_error, seconds_between, when
from long_task_shared import humanize, outcome

STATES = ["registered", "queued", "running", "pausing", "paused", "completed", "failed", "terminating", "terminated"]
LIST_COLUMNS = [
    "id",
    "type",
    "file",
    "state",
    "percent",
    "rows",
    "rejected",
    "rows/s",
    "eta",
    "created",
    "ran",
    "reason",
]
LEFT_ALIGNED = {"type", "file", "state", "created", "reason"}
# On a narrow terminal, the columns left out, in this order, and the least that the file name
# and the reason are cut to first.
SHORTENED_CHARS = 16
LEFT_OUT_FIRST = ("type", "eta", "rows/s", "rejected", "ran", "created", "reason")
# A list's line cuts a long file name and a failure's reason (`status ID` shows the whole reason).
FILE_CHARS = 30
REASON_CHARS = 60


def cmd_import(api: Api, args) -> int:
    started = api.import_checked(args.op_id)
    op_id = started["op_id"]
    if args.json:
        out(json.dumps(started, indent=2))
        return outcome.COMPLETED
    display = for_output()
    display.line(f"operation {op_id} imports the file that dry run {args.op_id} checked ({started['state']})")
    if not args.follow:
        display.stop()
        display.line(f"  follow it: long-task follow {op_id}")
        return outcome.COMPLETED
    return follow(api, op_id, display, interval=args.interval, reached=True)


def withdraw(api: Api, op_id: int, exc: BaseException, *, what: str) -> int:
    """The start did not go through: terminate the operation it registered, if it is still
    only registered (best effort: a second Ctrl-C or a lost server leaves it registered), and
    report why (re-raised) or the interruption (exit 130)."""
    with contextlib.suppress(ApiError, Unreachable, KeyboardInterrupt):
        api.terminate(op_id)
    if isinstance(exc, KeyboardInterrupt):
        say_error(f"{what} interrupted; operation {op_id} withdrawn")
        return outcome.INTERRUPTED
    if isinstance(exc, ApiError) and not exc.hint:
        exc.hint = f"operation {op_id} withdrawn"
    raise exc


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
    upload = status.get("upload")
    if upload and not upload.get("finished"):  # registered, its file still arriving
        received = f"{humanize.size(upload['bytes_received'])} of {humanize.size(upload['bytes_total'])}"
        out(f"  upload    {received} received")
    if status.get("rows_per_second"):
        speed = (
            f"{humanize.count(status['rows_per_second'])} rows/s, ETA {humanize.duration(status.get('eta_seconds'))}"
        )
        out(f"  speed     {speed}")
    if status.get("error"):
        out(f"  error     {status['error']}")
    out(f"  created   {when(status.get('created_at'))}")
    out(f"  started   {when(status.get('started_at'))}")
    out(f"  finished  {when(status.get('finished_at'))}")
    return outcome.COMPLETED


def cmd_pause(api: Api, args) -> int:
    return pause_and_report(api, args.op_id, out)


def cmd_resume(api: Api, args) -> int:
    answer = api.resume(args.op_id)
    lines = humanize.count(answer["lines_finished"])
    if not args.follow:
        out(f"operation {args.op_id} resumed after {lines} rows ({answer['state']})")
        out(f"  follow it: long-task follow {args.op_id}")
        return outcome.COMPLETED
    display = for_output()
    display.line(f"operation {args.op_id} resumed after {lines} rows")
    return follow(api, args.op_id, display, interval=args.interval, reached=True)


def cmd_terminate(api: Api, args) -> int:
    answer = api.terminate(args.op_id, force=args.force, wait=ACK_WAIT_SECONDS)
    if answer["state"] == "terminated":
        out(f"operation {args.op_id} terminated: its rows and its file are deleted")
    else:
        out(f"operation {args.op_id} is {answer['state']}: a worker is deleting its rows")
    return outcome.COMPLETED


def list_row(op: dict, *, for_terminal: bool) -> list[str]:
    """An operation's line in `list`: what tells it apart (file, age, how long it ran, why it
    failed) and how it goes. On a terminal the created time is an age; for scripts, the time."""
    reason = humanize.shorten(op.get("error") or "no reason recorded", REASON_CHARS) if op["state"] == "failed" else ""
    file_name = op.get("file_name") or "-"
    created = humanize.ago(seconds_between(op["created_at"], now_iso())) if for_terminal else when(op["created_at"])
    figures = [
        percent_text(op) or "-",
        humanize.count(op["lines_finished"]),
        humanize.count(op["lines_failed"]),
        humanize.count(op["rows_per_second"]),
        humanize.duration(op["eta_seconds"]),
    ]
    ran = humanize.duration(op.get("duration_seconds"))
    if for_terminal:
        return [
            str(op["op_id"]),
            op["op_type"],
            humanize.shorten(file_name, FILE_CHARS),
            op["state"],
            *figures,
            created,
            ran,
            reason,
        ]
    # Tab-separated: the first nine fields as they always were, then the new ones.
    return [
        str(op["op_id"]),
        op["op_type"],
        op["state"],
        *figures,
        when(op["updated_at"]),
        " ".join(file_name.split()),
        created,
        ran,
        reason,
    ]


def columns_that_fit(rows: list[list[str]], width: int) -> dict[int, int]:
    """The columns of the list a terminal of `width` shows, each operation on one line: the
    least telling ones are left out first (as the console's list does on a phone). By index,
    the least width each needs."""
    widths = [max([len(name), *(len(row[i]) for row in rows)]) for i, name in enumerate(LIST_COLUMNS)]
    for name in ("file", "reason"):  # shortened by the table when the terminal is narrow
        index = LIST_COLUMNS.index(name)
        widths[index] = min(widths[index], SHORTENED_CHARS)
    shown = list(range(len(LIST_COLUMNS)))
    for name in LEFT_OUT_FIRST:
        if sum(widths[i] + 2 for i in shown) <= width:
            break
        shown.remove(LIST_COLUMNS.index(name))
    return {i: widths[i] for i in shown}


def cmd_list(api: Api, args) -> int:
    ops = list(api.operations(state=args.state, limit=args.limit))
    if args.json:
        out(json.dumps(ops, indent=2))
        return outcome.COMPLETED
    console = Console(highlight=False)
    if console.is_terminal:
        rows = [list_row(op, for_terminal=True) for op in ops]
        shown = columns_that_fit(rows, console.width)
        narrow = len(shown) < len(LIST_COLUMNS) or sum(shown.values()) + 2 * len(shown) > console.width
        table = Table(*(LIST_COLUMNS[i] for i in shown), box=None, header_style="bold", pad_edge=False)
        for column, least in zip(table.columns, shown.values(), strict=True):
            column.justify = "left" if column.header in LEFT_ALIGNED else "right"
            column.no_wrap, column.overflow, column.min_width = True, "ellipsis", least
            if narrow and column.header in ("file", "reason"):
                column.max_width = least
        for row in rows:
            table.add_row(*(row[i] for i in shown))
        console.print(table if ops else "no operations")
    else:  # for scripts: tab-separated, no header (as gh does)
        for op in ops:
            out("\t".join(list_row(op, for_terminal=False)))
    return outcome.COMPLETED
