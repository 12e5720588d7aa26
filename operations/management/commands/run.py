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
        # SIGTERM (a service manager stopping us) ends the run like Ctrl-C does.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        children = [subprocess.Popen(command) for command in commands]
        self.stdout.write(f"long_task on http://{options['host']}:{options['port']}/ (Ctrl-C stops)")
        try:
            while all(child.poll() is None for child in children):
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass  # the terminal sent SIGINT to the children too
        finally:
            for child in children:
                if child.poll() is None:
                    child.send_signal(signal.SIGINT)
            deadline = time.monotonic() + 15
            for child in children:
                try:
                    child.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    child.kill()
