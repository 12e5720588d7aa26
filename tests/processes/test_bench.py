"""A smoke run of `make bench` (bench/bench.py, its harness and targets) at a tiny size, with the
CPU hog, so that it cannot rot. Its figures mean nothing at this size; that every target is
measured and reported, with CPU accounting beside the wall clock, does."""

import importlib.util
import os
import subprocess
import sys
import threading

import pytest

from tests.support import ROOT, database_url

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]


def test_bench_measures_and_reports_every_target():
    env = {**os.environ}
    if database_url().startswith("postgres"):
        env["DATABASE_URL"] = database_url()  # the bench uses <this name>_bench
    else:
        env.pop("DATABASE_URL", None)  # the bench makes a temporary SQLite file
    arguments = ["--rows", "6000", "--samples", "2", "--repeats", "2", "--idle-seconds", "0.5", "--clients", "2"]
    arguments += ["--cpu-hog"]
    run = subprocess.run(
        [sys.executable, "bench/bench.py", *arguments], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    table = [line for line in run.stdout.splitlines() if line.startswith("| ")]
    targets = {line.split()[1] for line in table[1:]}
    assert targets == {"1.", "2.", "3.", "4.", "5.", "6.", "7.", "8.", "9.", "10.", "11.", "12.", "13."}, run.stdout
    assert all(line.rstrip(" |").split("|")[-1].strip() in ("PASS", "FAIL", "n/a") for line in table[1:])
    assert table[0].split("|")[4].strip() == "CPU ratio" and table[0].split("|")[5].strip() == "wall ratio"
    imports = next(line for line in table if line.startswith("| 1. import"))
    assert "CPU ms/1k rows" in imports and "worker" in imports and "process" in imports, imports
    if database_url().startswith("postgres"):
        assert "backend" in imports, imports
    assert_typed_rows(table)


def assert_typed_rows(table: list[str]) -> None:
    """The typed import's rows: next to the raw loop with the same rows rejected (the bench
    stops when they differ), its memory and pauses, and django-import-export beside it."""
    rows = {line.split("|")[1].strip(): line for line in table[1:]}
    typed = next(line for name, line in rows.items() if name.startswith("11. typed import"))
    assert "60 rows rejected" in typed and "the same rows rejected" in typed, typed
    assert "raw driver loop" in typed and "CPU ms/1k rows" in typed, typed
    assert any(name.startswith("11. peak RSS worker (typed import)") for name in rows), rows
    assert any(name.startswith("11. pause answered -> ack (typed import)") for name in rows), rows
    versus = next(line for name, line in rows.items() if name.startswith("12. typed import vs django-import-export"))
    assert versus.count("60 rows rejected") == 2 and "use_bulk" in versus, versus


def test_a_poller_that_missed_its_sigint_gets_another():
    sys.path.insert(0, str(ROOT / "bench"))
    from targets import interrupted_output

    # Like a poller that was not yet listening: the first SIGINT changes nothing.
    code = (
        "import signal, time\n"
        "seen = []\n"
        "signal.signal(signal.SIGINT, lambda *_: seen.append(1))\n"
        "print('ready', flush=True)\n"
        "while len(seen) < 2:\n"
        "    time.sleep(0.01)\n"
        "print('stopped after', len(seen))\n"
    )
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    watchdog = threading.Timer(60, process.kill)  # without a second SIGINT it would never end
    watchdog.start()
    try:
        assert process.stdout.readline() == "ready\n"
        assert interrupted_output(process, patience=0.5) == "stopped after 2\n"
    finally:
        watchdog.cancel()
        process.kill()
        process.wait()


def test_the_bench_follows_as_the_client_does_by_default():
    """Target 5's followers stand for `long-task follow` as installed: same interval, same long poll."""
    # bench/bench.py is a script; `bench` is also the package of that directory.
    spec = importlib.util.spec_from_file_location("bench_script", ROOT / "bench" / "bench.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    from long_task_client import cli

    following = cli.build_parser().parse_args(["follow", "1"])
    assert bench.FOLLOW_INTERVAL == following.interval == cli.FOLLOW_INTERVAL_SECONDS
    assert bench.FOLLOW_LONG_POLL_SECONDS == cli.LONG_POLL_SECONDS
