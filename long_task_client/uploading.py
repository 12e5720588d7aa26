"""`long-task upload FILE`: register an import and start it with FILE.

A file of one piece or less goes in one request (multipart). A bigger one goes over tus
(tus.py) in pieces: the upload's URL is kept in the state file (upload_state.py) until the
operation has started, so that Ctrl-C, a dropped link or a killed client loses at most the
piece in flight, and the same command continues from the server's offset."""

import contextlib
import json
import os
import shlex
import signal
import time
from pathlib import Path

from long_task_client.api import Api, ApiError, Unreachable
from long_task_client.control import withdraw
from long_task_client.display import PlainDisplay, for_output
from long_task_client.following import follow
from long_task_client.output import UsageError, out, say_error
from long_task_client.tus import DEFAULT_CHUNK_BYTES, Gone, Sender, TusClient, retry_waits, worth_retrying
from long_task_client.upload_state import FileIdentity, Unfinished, UploadState, entry_key
from long_task_shared import humanize, outcome

# For tests and demonstrations of a cut: the client sends itself SIGINT (as Ctrl-C does) once
# this many pieces have been confirmed by the server.
STOP_AFTER_PIECES_VARIABLE = "LONG_TASK_STOP_AFTER_PIECES"


def upload_options(args) -> dict:
    """The Upload's options the command line gives: `strict`, `dry_run`, and a `target` with its
    `mapping`."""
    options: dict = {"strict": True} if args.strict else {}
    if args.dry_run:
        options["dry_run"] = True
    if args.target:
        options["target"] = args.target
    if args.mapping:
        try:
            options["mapping"] = json.loads(args.mapping)
        except ValueError:
            raise UsageError('--mapping takes a JSON object, e.g. \'{"Full Name": "name"}\'') from None
    return options


def cmd_upload(api: Api, args) -> int:
    path = Path(args.file)
    try:
        handle = path.open("rb")
        stat = os.fstat(handle.fileno())
    except OSError as exc:
        raise UsageError(f"cannot read {args.file}: {exc.strerror}") from None
    options = upload_options(args)
    with handle:
        state = UploadState()
        key = entry_key(
            server=api.url, token=api.http.headers.get("Authorization"), identity=FileIdentity.of(path, stat)
        )
        unfinished = state.get(key)
        if args.resume and unfinished is None:
            raise UsageError(f"no unfinished upload of {args.file} to resume (without --resume it starts anew)")
        if unfinished is None and stat.st_size <= args.chunk_size:
            return one_request(api, args, handle, path=path, total=stat.st_size, options=options)
        upload = ResumableUpload(api, args, handle, path=path, total=stat.st_size, options=options)
        return upload.run(state, key, unfinished)


def one_request(api: Api, args, handle, *, path: Path, total: int, options: dict) -> int:
    op_id = api.register(**options)["op_id"]
    display = PlainDisplay() if args.json else for_output()
    if not args.json:
        display.upload_started(op_id, path.name, total)
    on_progress = (lambda done: None) if args.json else display.upload_progress
    try:
        started = api.start(op_id, handle, name=path.name, on_progress=on_progress)
    except (ApiError, Unreachable, KeyboardInterrupt) as exc:
        display.stop()
        return withdraw(api, op_id, exc, what="upload")
    return started_report(api, args, display, started)


def started_report(api: Api, args, display, started: dict) -> int:
    op_id = started["op_id"]
    if args.json:
        out(json.dumps(started, indent=2))
        return outcome.COMPLETED
    display.upload_finished()
    if not args.follow:
        display.stop()
        display.line(f"operation {op_id} started ({started['state']}); follow it: long-task follow {op_id}")
        return outcome.COMPLETED
    return follow(api, op_id, display, interval=args.interval, reached=True)


def continue_command(args) -> str:
    words = ["long-task", "upload", args.file, "--resume"]
    if args.strict:
        words.append("--strict")
    if args.dry_run:
        words.append("--dry-run")
    if args.target:
        words += ["--target", args.target]
    if args.mapping:
        words += ["--mapping", args.mapping]
    if args.checksum:
        words.append("--checksum")
    if args.chunk_size != DEFAULT_CHUNK_BYTES:
        words += ["--chunk-size", str(args.chunk_size)]
    return shlex.join(words)


class ResumableUpload:
    """One run of a tus upload: find or create it, register (or find) its operation, send
    from the server's offset, then start the operation from it."""

    def __init__(self, api: Api, args, handle, *, path: Path, total: int, options: dict):
        self.api, self.args, self.handle = api, args, handle
        self.path, self.total, self.options = path, total, options
        self.tus = TusClient(api)
        self.display = PlainDisplay() if args.json else for_output()
        self.pieces_to_stop = int(os.environ.get(STOP_AFTER_PIECES_VARIABLE) or 0)

    def run(self, state: UploadState, key: str, unfinished: Unfinished | None) -> int:
        server = self.tus.options()
        if server.max_size is not None and self.total > server.max_size:
            raise ApiError(
                413,
                f"{self.args.file} is {humanize.size(self.total)}; the server takes up to "
                f"{humanize.size(server.max_size)}",
            )
        url, offset = self.continued(unfinished) if unfinished else (None, 0)
        if url is None:
            if unfinished is not None and unfinished.op_id is not None:
                self.withdraw_quietly(unfinished.op_id)  # it waited for an upload that is gone
            url = self.tus.create(length=self.total, metadata={"filename": self.path.name, "filetype": "text/csv"})
            unfinished = Unfinished(url=url, file=str(self.path.resolve()), size=self.total)
        unfinished.op_id = self.operation_for(unfinished)
        unfinished.options = self.options
        state.put(key, unfinished)
        self.announce(unfinished.op_id, offset)
        sender = Sender(
            self.tus,
            url,
            self.handle,
            total=self.total,
            chunk_bytes=self.args.chunk_size,
            # A piece's checksum costs a hash on each side while the other waits; TLS and TCP
            # already check the bytes in transit, and the server hashes the whole file.
            algorithm=server.checksum_algorithm if self.args.checksum else None,
            on_progress=self.progress,
            on_piece=self.piece_confirmed,
            on_retry=self.retrying,
        )
        return self.send(sender, state, key, unfinished.op_id, offset)

    def send(self, sender: Sender, state: UploadState, key: str, op_id: int, offset: int) -> int:
        """Send from `offset`, then start the operation. A cut keeps the upload (and the state
        file's entry) for the next run; a refusal deletes it and withdraws the operation."""
        try:
            sender.run(offset)
        except KeyboardInterrupt:
            return self.interrupted(op_id, sender.offset)
        except OSError as exc:  # the file changed while it was sent: what the server has is no longer it
            self.give_up(state, key, sender.url)
            self.withdraw_quietly(op_id)
            raise UsageError(f"cannot read {self.args.file}: {exc.strerror or exc}") from None
        except Gone:
            state.forget(key)
            self.withdraw_quietly(op_id)
            raise ApiError(
                404,
                f"the upload of {self.args.file} is gone from the server (expired or deleted)",
                hint="run the command again to send it anew",
            ) from None
        except (Unreachable, ApiError) as exc:
            if isinstance(exc, ApiError) and not worth_retrying(exc):
                self.give_up(state, key, sender.url)
                return withdraw(self.api, op_id, exc, what="upload")
            self.display.stop()
            sent = f"sent {humanize.size(sender.offset)} of {humanize.size(self.total)}"
            say_error(f"{exc}; {sent}; operation {op_id} waits for the rest")
            say_error(f"  continue: {continue_command(self.args)}")
            return outcome.USAGE
        return self.start(state, key, op_id, sender.url)

    def continued(self, unfinished: Unfinished) -> tuple[str | None, int]:
        """The stored upload and the server's offset; (None, 0) when the server has it no more."""
        try:
            return unfinished.url, self.tus.offset(unfinished.url)
        except Gone:
            return None, 0

    def operation_for(self, unfinished: Unfinished) -> int:
        """The operation registered for this upload by an earlier run, if it still waits for it
        with the same options; else a new one, registered with the upload (its status then
        shows the bytes received while it waits), the earlier one withdrawn."""
        if unfinished.op_id is not None:
            if unfinished.options == self.options and self.still_registered(unfinished.op_id):
                return unfinished.op_id
            self.withdraw_quietly(unfinished.op_id)
        return self.api.register(upload=unfinished.url, **self.options)["op_id"]

    def still_registered(self, op_id: int) -> bool:
        try:
            return self.api.status(op_id)["state"] == "registered"
        except ApiError:
            return False

    def withdraw_quietly(self, op_id: int) -> None:
        """Terminate an operation left registered by an earlier run (best effort: it may be
        gone, or have moved on)."""
        with contextlib.suppress(ApiError, Unreachable):
            if self.still_registered(op_id):
                self.api.terminate(op_id)

    def announce(self, op_id: int, offset: int) -> None:
        if self.args.json:
            return
        self.display.upload_started(op_id, self.path.name, self.total, offset=offset)
        if offset:
            self.display.line(f"continuing the upload at {humanize.size(offset)} of {humanize.size(self.total)}")

    def progress(self, done: int) -> None:
        if not self.args.json:
            self.display.upload_progress(done)

    def piece_confirmed(self, offset: int) -> None:
        if self.pieces_to_stop:
            self.pieces_to_stop -= 1
            if not self.pieces_to_stop:
                os.kill(os.getpid(), signal.SIGINT)

    def retrying(self, why: str, wait: float) -> None:
        notice = f"{why.rstrip('.')}; trying again in {wait:g}s"
        say_error(notice) if self.args.json else self.display.line(notice)  # --json: stdout is the JSON

    def interrupted(self, op_id: int, offset: int) -> int:
        self.display.stop()
        say_error(
            f"upload interrupted at {humanize.size(offset)} of {humanize.size(self.total)}; "
            f"operation {op_id} waits for the rest"
        )
        say_error(f"  continue: {continue_command(self.args)}   or give it up: long-task terminate {op_id}")
        return outcome.INTERRUPTED

    def start_when_finished(self, op_id: int, url: str) -> dict:
        """Start the operation from the upload. When the answer to the last piece was lost, the
        server may still be finishing the upload (its last byte in, its file not yet whole):
        it refuses the start with a 409 meanwhile, and the start is tried again."""
        for wait in [*retry_waits(), None]:
            try:
                return self.api.start_from_upload(op_id, upload=url)
            except ApiError as exc:
                if wait is None or exc.status_code != 409 or self.tus.offset(url) != self.total:
                    raise
                self.retrying("the server is still finishing the upload", wait)
                time.sleep(wait)
        raise AssertionError("unreachable")

    def give_up(self, state: UploadState, key: str, url: str) -> None:
        """The server refused a piece (not a cut): the upload cannot be finished; delete it."""
        state.forget(key)
        with contextlib.suppress(ApiError, Unreachable, Gone):
            self.tus.delete(url)

    def start(self, state: UploadState, key: str, op_id: int, url: str) -> int:
        try:
            started = self.start_when_finished(op_id, url)
        except ApiError as exc:
            self.give_up(state, key, url)
            self.display.stop()
            return withdraw(self.api, op_id, exc, what="upload")
        state.forget(key)
        return started_report(self.api, self.args, self.display, started)
