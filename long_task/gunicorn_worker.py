"""The web's gunicorn worker class (Procfile): uvicorn's, which also exits when its gunicorn
master is gone.

gunicorn's own workers check in their loop that their parent is still the master that forked
them; uvicorn's worker does not, so a SIGKILLed master would leave its workers serving on, with
no one to supervise them (SPEC §2, §11: no process outlives its supervisor). This worker looks
every `PARENT_CHECK_SECONDS`: once its parent has changed it stops as on a SIGTERM (the requests
in flight finish), and stops at once if they take longer than gunicorn's `--graceful-timeout`.

It also keeps glibc's malloc to `WEB_MALLOC_ARENAS` arenas (see `limit_malloc_arenas`).
"""

import asyncio
import ctypes
import os
import signal

from uvicorn_worker import UvicornWorker

PARENT_CHECK_SECONDS = 1.0
WEB_MALLOC_ARENAS = 2
M_ARENA_MAX = -8  # glibc's mallopt parameter


def limit_malloc_arenas(arenas: int = WEB_MALLOC_ARENAS) -> bool:
    """Keep glibc's malloc to `arenas` arenas in this process; True if it took the setting.

    glibc gives a thread that allocates an arena of its own, up to eight per core, and each
    arena keeps what was freed in it. The web runs each request's synchronous part on a thread of
    its own (Django's ASGI handler), so its memory grew with every new thread's arena over its
    first requests, the same uploads costing more as the process aged. An operator's
    MALLOC_ARENA_MAX, which glibc has read already, is left as it is; elsewhere than glibc
    there is nothing to limit."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    return mallopt is not None and mallopt(M_ARENA_MAX, arenas) == 1


class SupervisedUvicornWorker(UvicornWorker):
    def init_process(self) -> None:
        # In the forked worker, before its threads (the master allocates little).
        limit_malloc_arenas()
        super().init_process()

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
