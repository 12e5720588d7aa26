"""The web's gunicorn worker class (Procfile): uvicorn's, which also exits when its gunicorn
master is gone.

gunicorn's own workers check in their loop that their parent is still the master that forked
them; uvicorn's worker does not, so a SIGKILLed master would leave its workers serving on, with
no one to supervise them (SPEC §2, §11: no process outlives its supervisor). This worker looks
every `PARENT_CHECK_SECONDS`: once its parent has changed it stops as on a SIGTERM (the requests
in flight finish), and stops at once if they take longer than gunicorn's `--graceful-timeout`.
"""

import asyncio
import os
import signal

from uvicorn_worker import UvicornWorker

PARENT_CHECK_SECONDS = 1.0


class SupervisedUvicornWorker(UvicornWorker):
    async def _serve(self) -> None:
        watch = asyncio.create_task(self._stop_when_orphaned())
        try:
            await super()._serve()
        finally:
            watch.cancel()

    async def _stop_when_orphaned(self) -> None:
        while os.getppid() == self.ppid:
            await asyncio.sleep(PARENT_CHECK_SECONDS)
        self.log.info("Parent changed, shutting down: %s", self)
        # uvicorn's server stops gracefully on the first signal, and at once on a SIGINT after it.
        signal.raise_signal(signal.SIGTERM)
        await asyncio.sleep(self.cfg.graceful_timeout)
        signal.raise_signal(signal.SIGINT)
