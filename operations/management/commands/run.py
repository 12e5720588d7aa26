"""`make run`: the web server and a worker in the foreground; one Ctrl-C stops both.

However this command is stopped, no child outlives it (SPEC §2, §11; docs/deployment.md):

- Each child runs in a process group of its own, so that a signal sent to our group (Ctrl-C in
  a terminal, `kill -TERM -PGID`, a service manager) reaches only us, and each child gets one
  SIGTERM, from us: the worker reads a second one as "exit now", without giving its operation
  back.
- The signal handlers only note the time; the main loop acts on it, so no signal can cut the
  stopping short (a handler that raised KeyboardInterrupt used to, when a second signal landed
  in the middle of it). Signals within BURST_SECONDS of the first are one request: GNU make
  passes on the SIGTERM that its process group has sent us too. A later one is a second
  request (a second Ctrl-C): the children get their second SIGTERM and the worker exits at once.
- Each child asks the kernel for a SIGTERM when we die (PR_SET_PDEATHSIG): that covers what no
  handler can, a SIGKILL of this process, and the worker still gives its operation back.
  `--stop-with-parent` (which `make run` passes) does the same for this process and make.
- Whatever has not ended when the grace period is up is killed.
"""

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

from django.core.management.base import BaseCommand, CommandError

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
BURST_SECONDS = 1.0
GRACE_SECONDS = 15.0
SECOND_REQUEST_GRACE_SECONDS = 3.0
POLL_SECONDS = 0.1
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


class Command(BaseCommand):
    help = "Run the web server and process_tasks workers together until Ctrl-C."

    def add_arguments(self, parser):
        parser.add_argument("--port", default=os.environ.get("PORT", "8000"))
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--workers", type=int, default=1)
        parser.add_argument("--sleep", type=float, default=0.2, help="worker poll interval, seconds")
        parser.add_argument(
            "--stop-with-parent",
            action="store_true",
            help="stop as on SIGTERM when the process that started this one dies (make run: make is killed)",
        )

    def handle(self, *args, **options):
        manage = [sys.executable, sys.argv[0]]
        commands = [[*manage, "runserver", "--noreload", f"{options['host']}:{options['port']}"]]
        commands += [[*manage, "process_tasks", "--sleep", str(options["sleep"])]] * options["workers"]
        requests = StopRequests()
        if options["stop_with_parent"]:
            parent = os.getppid()
            signal_at_parent_death(signal.SIGTERM)
            if os.getppid() != parent:  # it died in between: the kernel will not tell us
                os.kill(os.getpid(), signal.SIGTERM)
        children = [start(command) for command in commands]
        self.stdout.write(f"long_task on http://{options['host']}:{options['port']}/ (Ctrl-C stops)")
        ended = None
        try:
            while not requests:
                ended = next((child for child in children if child.poll() is not None), None)
                if ended is not None:
                    break
                time.sleep(POLL_SECONDS)
        finally:
            stop(children, requests, say=self.stdout.write)
        if ended is not None:
            name = ended.args[2]  # runserver or process_tasks
            raise CommandError(f"{name} ended by itself (exit code {ended.returncode}); stopped the others")


class StopRequests:
    """The stop signals received, as the times they came at (true once there is one). The
    handler only records, so that it can land anywhere, in the middle of stopping too."""

    def __init__(self):
        self.times: list[float] = []
        for signum in STOP_SIGNALS:
            # Under nohup a closed terminal is meant not to stop us. SIGINT is taken even when
            # ignored: a shell starts a background job (`make run &`) with SIGINT ignored.
            if signum == signal.SIGHUP and signal.getsignal(signum) == signal.SIG_IGN:
                continue
            signal.signal(signum, self._record)

    def _record(self, signum, frame) -> None:
        self.times.append(time.monotonic())

    def __bool__(self) -> bool:
        return bool(self.times)

    def repeated(self) -> bool:
        """A second request: a signal that came after the burst of the first."""
        return bool(self.times) and self.times[-1] - self.times[0] > BURST_SECONDS


def start(command: list[str]) -> subprocess.Popen:
    """Start `command` in a process group of its own, to get a SIGTERM if we die."""
    parent = os.getpid()

    def in_the_child() -> None:
        signal_at_parent_death(signal.SIGTERM)
        if os.getppid() != parent:  # we died between the fork and the prctl: do not start
            os._exit(1)

    return subprocess.Popen(command, process_group=0, preexec_fn=in_the_child)


def signal_at_parent_death(signum: int) -> None:
    """Ask the kernel to send this process `signum` when its parent dies (Linux; elsewhere a
    no-op, and a SIGKILL of the parent leaves its children running)."""
    if _prctl is not None and _prctl(PR_SET_PDEATHSIG, ctypes.c_ulong(signum)) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def stop(
    children: list[subprocess.Popen],
    requests: StopRequests,
    *,
    grace_seconds: float = GRACE_SECONDS,
    say: Callable[[str], object] = print,
) -> None:
    """SIGTERM to each child; a second SIGTERM at a second stop request (the worker then exits
    at once, its open chunk rolled back); SIGKILL to what still runs when the time is up."""
    signal_all(children, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    second_request = False
    while any(child.poll() is None for child in children):
        if not second_request and requests.repeated():
            second_request = True
            say("Second stop request: stopping at once.")
            signal_all(children, signal.SIGTERM)
            deadline = min(deadline, time.monotonic() + SECOND_REQUEST_GRACE_SECONDS)
        if time.monotonic() >= deadline:
            say("Killing what has not stopped in time.")
            signal_all(children, signal.SIGKILL)
            break
        time.sleep(POLL_SECONDS / 2)
    for child in children:
        child.wait()


def signal_all(children: list[subprocess.Popen], signum: int) -> None:
    """`signum` to the process group of each child still running (a child leads its group, and
    until it is reaped, a zombie at worst, its id and its group are still its own)."""
    for child in children:
        if child.poll() is None:
            os.killpg(child.pid, signum)
