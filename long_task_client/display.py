"""Progress while uploading and following: bars on a terminal (rich), plain lines elsewhere
(a pipe, a file, a CI log), where a line is printed when the state changes and at most every few
seconds otherwise."""

import sys
import time
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn

from long_task_shared import humanize

PLAIN_EVERY_SECONDS = 5.0


def progress_text(status: dict) -> str:
    """`running  123,456 rows  12 failed  250,000 rows/s  ETA 3m05s`: what is known of it."""
    parts = [status["state"], f"{humanize.count(status['lines_finished'])} rows"]
    if status.get("lines_failed"):
        parts.append(f"{humanize.count(status['lines_failed'])} failed")
    if status.get("rows_per_second"):
        parts.append(f"{humanize.count(status['rows_per_second'])} rows/s")
    if status.get("eta_seconds") is not None:
        parts.append(f"ETA {humanize.duration(status['eta_seconds'])}")
    return "  ".join(parts)


def percent_text(status: dict) -> str:
    return "" if status.get("percent") is None else f"{status['percent']:.1f}%"


class Upload:
    """Figures of an upload in progress: sent, total, average rate, time left."""

    def __init__(self, name: str, total: int, *, offset: int = 0):
        self.name, self.total, self.done = name, total, offset
        # The rate is of the bytes sent by this run: an upload continued starts at its offset.
        self.offset = offset
        self.started = time.monotonic()

    def rate(self) -> float | None:
        elapsed = time.monotonic() - self.started
        sent = self.done - self.offset
        return sent / elapsed if elapsed > 0 and sent > 0 else None

    def detail(self) -> str:
        rate = self.rate()
        text = f"{humanize.size(self.done)} / {humanize.size(self.total)}"
        if rate:
            text += f"  {humanize.size(round(rate))}/s  ETA {humanize.duration((self.total - self.done) / rate)}"
        return text

    def summary(self) -> str:
        seconds = time.monotonic() - self.started
        rate = f", {humanize.size(round((self.total - self.offset) / seconds))}/s" if seconds > 0 else ""
        return f"uploaded {self.name} ({humanize.size(self.total)}) in {humanize.duration(seconds)}{rate}"


class PlainDisplay:
    """Plain lines, flushed at once: no escape sequences, no bar."""

    def __init__(self, out: TextIO | None = None):
        self.out = out or sys.stdout
        self._upload: Upload | None = None
        self._state = None
        self._next_line = 0.0

    def line(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def _due(self) -> bool:
        now = time.monotonic()
        if now < self._next_line:
            return False
        self._next_line = now + PLAIN_EVERY_SECONDS
        return True

    def upload_started(self, op_id: int, name: str, total: int, *, offset: int = 0) -> None:
        self._upload = Upload(name, total, offset=offset)
        self.line(f"operation {op_id}: uploading {name} ({humanize.size(total)})")
        self._next_line = time.monotonic() + PLAIN_EVERY_SECONDS

    def upload_progress(self, done: int) -> None:
        self._upload.done = done
        if self._due():
            self.line(f"uploading {self._upload.detail()}")

    def upload_finished(self) -> None:
        self._upload.done = self._upload.total
        self.line(self._upload.summary())

    def status(self, status: dict) -> None:
        changed = status["state"] != self._state
        self._state = status["state"]
        if self._due() or changed:
            percent = percent_text(status)
            self.line(f"operation {status['op_id']}: {progress_text(status)}" + (f"  {percent}" if percent else ""))

    def stop(self) -> None:
        pass


class BarDisplay:
    """rich bars: the upload (bytes, rate, ETA), then the import (%, state, rows, rows/s, ETA)."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(highlight=False)
        self.progress = Progress(
            TextColumn("{task.description:<6}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[detail]}"),
            console=self.console,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._started = False
        self._upload: Upload | None = None
        self._upload_task: TaskID | None = None
        self._import_task: TaskID | None = None

    def _start(self) -> None:
        if not self._started:
            self.progress.start()
            self._started = True

    def line(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False)

    def upload_started(self, op_id: int, name: str, total: int, *, offset: int = 0) -> None:
        self.line(f"operation {op_id}: uploading {name}")
        self._upload = Upload(name, total, offset=offset)
        self._start()
        self._upload_task = self.progress.add_task("upload", total=total or 1, completed=offset, detail="")

    def upload_progress(self, done: int) -> None:
        self._upload.done = done
        self.progress.update(self._upload_task, completed=done, detail=self._upload.detail())

    def upload_finished(self) -> None:
        self._upload.done = self._upload.total
        self.progress.update(self._upload_task, completed=self._upload.total or 1, detail=self._upload.summary())

    def status(self, status: dict) -> None:
        self._start()
        if self._import_task is None:
            self._import_task = self.progress.add_task("import", total=100, detail="")
        percent = status.get("percent")
        self.progress.update(
            self._import_task,
            completed=percent or 0,
            total=100 if percent is not None else None,  # unknown: the bar pulses
            detail=progress_text(status),
        )

    def stop(self) -> None:
        if self._started:
            self.progress.stop()
            self._started = False


def for_output(out: TextIO | None = None) -> PlainDisplay | BarDisplay:
    """Bars when standard output is a terminal that can draw them, plain lines otherwise."""
    out = out or sys.stdout
    console = Console(file=out, highlight=False)
    if console.is_terminal and not console.is_dumb_terminal:
        return BarDisplay(console)
    return PlainDisplay(out)
