"""`process_tasks`, django-background-tasks' worker, with what long-running operations need:

- recovery: when idle, it takes up operations whose worker died (expired lease), instead of
  waiting for the task library's MAX_RUN_TIME; and now and then it sweeps files past their
  retention (operations.retention);
- graceful stop: SIGTERM or SIGINT lets the current chunk finish, gives the operation back
  (re-queued at its checkpoint) and exits; a second signal exits at once, which is safe too
  because an uncommitted chunk simply rolls back.
"""

import logging
import os
import signal
import time

from background_task.management.commands.process_tasks import Command as BackgroundTasksCommand
from background_task.tasks import autodiscover
from django.conf import settings
from django.core.checks import Tags
from django.db import close_old_connections

from operations import heartbeats, retention, stop_requests, tasks, worker

logger = logging.getLogger("operations.worker")
PRUNE_SECONDS = 3600
HEARTBEAT_PRUNE_SECONDS = 60


class Command(BackgroundTasksCommand):
    help = "Run queued operations. Ctrl-C or SIGTERM stops after the current chunk."

    # The system checks of what a worker uses: its models and its database. The others check the
    # web's parts, and running them imports those parts: the URL configuration (and with it the
    # API's views, DRF's renderers, drf-spectacular, django.test, jinja2, requests...), the
    # admin's and the templates' tag libraries, a third more memory before the first row. The
    # web runs them (`manage.py run`, `check`, `migrate` run them all).
    requires_system_checks = [Tags.models, Tags.database]

    def handle(self, *args, **options):
        # Below the web processes' CPU priority: a request that needs a core while an import
        # runs gets it at once, and costs the import only the milliseconds it uses.
        os.nice(settings.LONG_TASK_WORKER_NICE)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_stop_signal)
        self.run(*args, **options)

    def _on_stop_signal(self, signum, frame):
        if worker.stop_requested():
            raise SystemExit(128 + signum)
        logger.info("worker %s: stopping after the current chunk", worker.worker_id())
        worker.request_stop()

    def run(self, *args, **options):
        duration = options.get("duration") or 0
        sleep = options.get("sleep", 5.0)
        queue = options.get("queue")
        autodiscover()
        stop_requests.listen()
        logger.info("worker %s: started", worker.worker_id())
        beat = heartbeats.for_worker(worker.worker_id())
        self._report(beat.started)
        try:
            self._loop(duration=duration, sleep=sleep, queue=queue, beat=beat)
        finally:
            self._report(beat.stopped)
        logger.info("worker %s: stopped", worker.worker_id())

    @staticmethod
    def _report(report) -> None:
        """The dashboard's record of this worker: never a reason to stop working."""
        try:
            report()
        except Exception:
            logger.warning("worker %s: heartbeat not recorded", worker.worker_id(), exc_info=True)
            close_old_connections()

    def _loop(self, *, duration: float, sleep: float, queue, beat: heartbeats.Heartbeat) -> None:
        started = time.monotonic()
        last_recovery = last_prune = last_sweep = last_heartbeat_prune = 0.0
        while not worker.stop_requested() and (duration <= 0 or time.monotonic() - started <= duration):
            self._report(beat.idle)
            if time.monotonic() - last_heartbeat_prune >= HEARTBEAT_PRUNE_SECONDS:
                last_heartbeat_prune = time.monotonic()
                self._report(heartbeats.prune)
            if time.monotonic() - last_recovery >= settings.LONG_TASK_RECOVERY_SECONDS:
                last_recovery = time.monotonic()
                try:
                    worker.recover_stalled()
                    if time.monotonic() - last_prune >= PRUNE_SECONDS:
                        last_prune = time.monotonic()
                        tasks.prune_task_history()
                    if time.monotonic() - last_sweep >= settings.LONG_TASK_SWEEP_SECONDS:
                        last_sweep = time.monotonic()
                        retention.sweep()
                except Exception:
                    logger.exception("recovery sweep failed")
                    close_old_connections()
            try:
                ran = self._tasks.run_next_task(queue)
            except Exception:
                # The task library's own bookkeeping failed (database away): our operation's
                # state is safe in its checkpoint; wait and go on.
                logger.exception("worker %s: task bookkeeping failed", worker.worker_id())
                ran = False
            if not ran:
                close_old_connections()
                worker.wait_for_stop(min(sleep, heartbeats.HEARTBEAT_SECONDS))
