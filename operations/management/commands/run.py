"""`make run`: the web server and a worker in the foreground; one Ctrl-C stops both."""

import os
import signal
import subprocess
import sys
import time

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Run the web server and process_tasks workers together until Ctrl-C."

    def add_arguments(self, parser):
        parser.add_argument("--port", default=os.environ.get("PORT", "8000"))
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--workers", type=int, default=1)
        parser.add_argument("--sleep", type=float, default=0.2, help="worker poll interval, seconds")

    def handle(self, *args, **options):
        manage = [sys.executable, sys.argv[0]]
        commands = [[*manage, "runserver", "--noreload", f"{options['host']}:{options['port']}"]]
        commands += [[*manage, "process_tasks", "--sleep", str(options["sleep"])]] * options["workers"]
        # Ctrl-C, SIGTERM (a service manager) and a closed terminal all end the run, also when
        # a shell started us with SIGINT ignored (a background job).
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.default_int_handler)
        # The children have a process group of their own, so that a Ctrl-C reaches only us and
        # each child gets exactly one SIGTERM from us: a second signal would make the worker
        # stop at once instead of after its chunk.
        children = [subprocess.Popen(command, process_group=0) for command in commands]
        self.stdout.write(f"long_task on http://{options['host']}:{options['port']}/ (Ctrl-C stops)")
        try:
            while all(child.poll() is None for child in children):
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        finally:
            stop(children)


def stop(children: list[subprocess.Popen], grace_seconds: float = 15) -> None:
    """SIGTERM to each child, SIGKILL to those still running after the grace period or at a
    second Ctrl-C."""
    for child in children:
        child.terminate()
    deadline = time.monotonic() + grace_seconds
    try:
        for child in children:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        for child in children:
            child.kill()
