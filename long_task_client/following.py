"""Following an operation until it stops moving (upload --follow, follow, resume --follow,
export): the progress, the closing lines and the exit code; Ctrl-C pauses the operation."""

import time
from collections.abc import Callable

from long_task_client.api import Api, ApiError, Unreachable
from long_task_client.output import seconds_between
from long_task_shared import humanize, outcome

# How long a follow that has begun keeps trying when the server stops answering (a restart, say).
RECONNECT_SECONDS = 30.0
# The waits between those tries: doubling from the first to the longest.
RETRY_FIRST_SECONDS = 1.0
RETRY_LONGEST_SECONDS = 8.0
# How long a Ctrl-C waits for the worker to acknowledge the pause (the server's default
# LONG_TASK_MAX_WAIT_SECONDS).
ACK_WAIT_SECONDS = 10.0
# A long poll asks the server to answer when the status changes, within this many seconds
# (the server bounds it by its LONG_TASK_MAX_WAIT_SECONDS).
LONG_POLL_SECONDS = 8.0
# How often a follow asks at most while the operation moves: once a second, as curl's and dd's
# progress do (and `op_status --follow`); asking more often costs the server for a display
# nobody reads faster. A change (a pause, the end) shows within the interval at worst, and at
# once when it lands during a long poll, as it does while nothing moves.
FOLLOW_INTERVAL_SECONDS = 1.0


def report_end(status: dict, say: Callable[[str], None], *, next_steps: bool = True) -> int | None:
    """The closing lines of a follow, and its exit code (None: the operation still moves)."""
    op_id, state = status["op_id"], status["state"]
    if state == "completed":
        _completed(status, say, next_steps=next_steps)
    elif state == "failed":
        say(f"operation {op_id} failed after {humanize.count(status['lines_finished'])} rows: {status['error']}")
        say(f"  resume it: long-task resume {op_id} --follow   or give it up: long-task terminate {op_id}")
    elif state == "paused":
        say(f"operation {op_id} is paused after {humanize.count(status['lines_finished'])} rows")
        say(f"  resume it: long-task resume {op_id} --follow")
    elif state == "terminated":
        say(f"operation {op_id} was terminated: its rows and its file are deleted")
    return outcome.exit_code(state)


def _completed(status: dict, say: Callable[[str], None], *, next_steps: bool) -> None:
    op_id = status["op_id"]
    seconds = seconds_between(status.get("started_at"), status.get("finished_at"))
    took = "" if seconds is None else f" in {humanize.duration(seconds)}"  # pauses included
    if status.get("op_type") == "Export":
        say(f"operation {op_id} completed{took}: {humanize.count(status['lines_finished'])} rows exported")
        if next_steps:
            say(f"  the file: long-task download {op_id} -o export-{op_id}.csv")
        return
    failed = status["lines_failed"]
    imported = status["lines_finished"] - failed
    if status.get("dry_run") is not None:
        _checked(status, say, took=took, next_steps=next_steps)
        return
    counts = f"{humanize.count(imported)} rows imported, {humanize.count(failed)} rejected"
    say(f"operation {op_id} completed{took}: {counts}")
    if next_steps:
        if failed:
            say(f"  the rejected rows: long-task errors {op_id}")
        say(f"  the rows: long-task rows {op_id} --format csv -o rows.csv")


def _checked(status: dict, say: Callable[[str], None], *, took: str, next_steps: bool) -> None:
    """The end of a dry run: its verdicts, and how to import."""
    op_id, verdicts = status["op_id"], status["dry_run"]
    accepted, rejected = humanize.count(verdicts["accepted"]), humanize.count(verdicts["rejected"])
    say(f"dry run {op_id} completed{took}: {accepted} rows would be imported, {rejected} rejected")
    for kind, count in sorted(verdicts["rejected_by_reason"].items(), key=lambda item: -item[1]):
        say(f"  {humanize.count(count):>9}  {kind}")
    for error in verdicts["first_errors"]:
        say(f"  line {error['line_number']}: {error['reason']}")
    if next_steps:
        if verdicts["rejected"]:
            say(f"  the rejected rows: long-task errors {op_id}")
        if verdicts.get("import_operation"):
            say(f"  imported by operation {verdicts['import_operation']}")
        else:
            say(f"  import the same file: long-task import {op_id} --follow")


def follow(api: Api, op_id: int, display, *, interval: float, reached: bool = False, next_steps: bool = True) -> int:
    """Show the progress until the operation stops moving; Ctrl-C pauses it. `reached`: the
    server has just answered (an upload, a resume), so a first question that gets no answer is
    retried as a later one would be; otherwise it ends the follow at once."""
    try:
        try:
            status = _poll_until_end(api, op_id, display, interval=interval, reached=reached)
        except KeyboardInterrupt:
            return _pause_on_ctrl_c(api, op_id, display)
    finally:
        display.stop()
    return report_end(status, display.line, next_steps=next_steps)


def _poll_until_end(api: Api, op_id: int, display, *, interval: float, reached: bool) -> dict:
    """Ask at most every `interval` seconds; while nothing changes (queued, pausing, a slow
    chunk), one long poll waits for the change instead of asking again and again."""
    last_answer = time.monotonic()
    status, etag, retries, answered = None, None, 0, reached
    while True:
        try:
            # The first question is answered at once (no version to wait on yet: an operation
            # already finished would otherwise show nothing for a whole long poll).
            changed, etag = api.next_status(op_id, etag=etag, wait=LONG_POLL_SECONDS if etag else 0)
        except Unreachable as exc:
            # A server that never answered is down or wrongly named: say so now (exit 3). One
            # that stops answering while we follow is perhaps restarting: wait for it a while.
            if not answered or time.monotonic() - last_answer > RECONNECT_SECONDS:
                raise
            delay = min(RETRY_FIRST_SECONDS * 2**retries, RETRY_LONGEST_SECONDS)
            retries += 1
            display.line(f"{exc}; trying again in {humanize.duration(delay)}")
            time.sleep(delay)
            continue
        last_answer, retries, answered = time.monotonic(), 0, True
        if changed is not None:
            status = changed
            display.status(status)
            if outcome.exit_code(status["state"]) is not None:
                return status
        time.sleep(interval)


def _pause_on_ctrl_c(api: Api, op_id: int, display) -> int:
    """Ask to pause, then wait a while for the worker's acknowledgement; a second Ctrl-C stops
    waiting and says how far the pause got."""
    display.line(f"Ctrl-C: pausing operation {op_id} (Ctrl-C again stops waiting for it)")
    answer = None
    try:
        answer = _ask_to_pause(api, op_id)
        display.status(answer)
        status = _wait_while_pausing(api, answer)
    except KeyboardInterrupt:
        display.stop()
        display.line(_left_while_pausing(op_id, answer))
        return outcome.INTERRUPTED
    display.stop()
    if status["state"] in ("pausing", "paused"):
        return _paused(status, display.line)
    code = report_end(status, display.line)
    if code is None:  # terminating, say: not ours to wait for
        display.line(f"operation {op_id} is {status['state']}")
        return outcome.STOPPED
    return code


def _ask_to_pause(api: Api, op_id: int) -> dict:
    try:
        return api.pause(op_id)
    except ApiError as exc:
        if exc.status_code != 409:
            raise
        # It got somewhere first (completed, failed, paused by someone else...): say where.
        return api.status(op_id)


def _wait_while_pausing(api: Api, status: dict) -> dict:
    """The status once the worker has acknowledged the pause, or as it is after ACK_WAIT_SECONDS."""
    deadline = time.monotonic() + ACK_WAIT_SECONDS
    etag = None
    while status["state"] == "pausing" and (left := deadline - time.monotonic()) > 0:
        changed, etag = api.next_status(status["op_id"], etag=etag, wait=min(left, LONG_POLL_SECONDS))
        status = changed or status
    return status


def _left_while_pausing(op_id: int, answer: dict | None) -> str:
    """What a second Ctrl-C leaves behind, as far as the client knows."""
    if answer is None:
        return (
            f"stopped before the server answered the pause: operation {op_id} may still be running "
            f"(long-task status {op_id}; long-task pause {op_id})"
        )
    if answer["state"] == "pausing":
        return (
            f"pause requested: operation {op_id} is pausing (its worker stops at the end of its chunk); "
            f"not waiting for it (long-task status {op_id})"
        )
    return f"operation {op_id} is {answer['state']}; not waiting for it (long-task status {op_id})"


def _paused(status: dict, say: Callable[[str], None]) -> int:
    op_id, lines = status["op_id"], humanize.count(status["lines_finished"])
    if status["state"] == "paused":
        say(f"operation {op_id} paused after {lines} rows")
    else:
        say(f"operation {op_id} is {status['state']}: the worker stops at the end of its chunk")
    say(f"  resume it: long-task resume {op_id} --follow")
    return outcome.STOPPED


def pause_and_report(api: Api, op_id: int, say: Callable[[str], None]) -> int:
    """`long-task pause`: ask, wait for the acknowledgement (the server waits), say where it is."""
    _paused(api.pause(op_id, wait=ACK_WAIT_SECONDS), say)
    return outcome.COMPLETED
