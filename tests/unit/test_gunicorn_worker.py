"""The web's worker class keeps glibc's malloc to a few arenas (long_task/gunicorn_worker.py)."""

import os
import subprocess
import sys
import textwrap

import pytest

from long_task import gunicorn_worker

# Eight threads that hold memory malloc'd at once; then the number of glibc's arenas.
COUNT_ARENAS = textwrap.dedent(
    """
    import ctypes, sys, tempfile, threading
    from long_task.gunicorn_worker import limit_malloc_arenas

    if sys.argv[1] == "limited":
        assert limit_malloc_arenas()
    libc = ctypes.CDLL(None)
    libc.malloc.restype = libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    all_hold = threading.Barrier(9)
    done = threading.Event()

    def allocate():
        blocks = [libc.malloc(4096) for _ in range(64)]
        all_hold.wait()
        done.wait()

    threads = [threading.Thread(target=allocate) for _ in range(8)]
    for thread in threads:
        thread.start()
    all_hold.wait()
    with tempfile.NamedTemporaryFile("r") as info:
        stream = libc.fopen(info.name.encode(), b"w")
        libc.malloc_info(0, stream)
        libc.fclose(stream)
        print(info.read().count("<heap nr="))
    done.set()
    """
)


def arenas(mode: str) -> int:
    env = {name: value for name, value in os.environ.items() if name != "MALLOC_ARENA_MAX"}
    run = subprocess.run([sys.executable, "-c", COUNT_ARENAS, mode], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return int(run.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_the_web_keeps_malloc_to_its_arenas_however_many_threads_allocate():
    assert arenas("unlimited") > gunicorn_worker.WEB_MALLOC_ARENAS  # else this test shows nothing
    assert arenas("limited") <= gunicorn_worker.WEB_MALLOC_ARENAS


def test_an_operators_malloc_arena_max_is_left_as_it_is(monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert gunicorn_worker.limit_malloc_arenas() is False


def test_each_web_worker_limits_its_arenas_before_it_serves(monkeypatch):
    calls = []
    monkeypatch.setattr(gunicorn_worker, "limit_malloc_arenas", lambda: calls.append("limit"))
    monkeypatch.setattr(gunicorn_worker.UvicornWorker, "init_process", lambda self: calls.append("serve"))
    gunicorn_worker.SupervisedUvicornWorker.init_process(object.__new__(gunicorn_worker.SupervisedUvicornWorker))
    assert calls == ["limit", "serve"]
