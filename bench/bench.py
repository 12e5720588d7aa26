"""`make bench`: the performance targets of long_task, each measured next to a baseline taken in
the same run, on a real server (gunicorn) with real `process_tasks` workers.

    make bench                      # SQLite, 100,000 rows
    make bench FULL=1               # 1,000,000 rows
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/long_task make bench FULL=1
    make bench FULL=1 BENCH_ARGS=--cpu-hog      # with one core kept busy by a neighbour

On PostgreSQL the database "<name>_bench" is dropped and created again; on SQLite a temporary
file is used. The data is generated (name,phone,email,city, about 75 bytes a row).

The harness (processes, CPU accounting, ABBA alternation, statistics, the table) is
bench/harness.py; the targets and their baselines are bench/targets.py, and those of an import
into a target table (`--targets typed_import typed_vs_import_export`) bench/typed_import.py.
"""

import argparse
import http.client
import json
import random
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
import targets  # noqa: E402
import typed_import  # noqa: E402

TARGETS = [*targets.TARGETS, *typed_import.TARGETS]
BASELINES = {**targets.BASELINES, **typed_import.BASELINES}

# What `long-task follow` does by default (long_task_client/cli.py, not imported: a client
# process starts in a few milliseconds without httpx and rich): --interval, and LONG_POLL_SECONDS.
FOLLOW_INTERVAL = 1.0
FOLLOW_LONG_POLL_SECONDS = 8.0


def ready_then_go() -> None:
    """Say "ready" once started, then wait for the bench's "go" (see targets.ask_status)."""
    print("ready", flush=True)
    sys.stdin.readline()


def poll_status(port: int, token: str, op_id: int) -> None:
    """A status poller (target 5): 10 calls a second from "go" until SIGINT, then the latencies
    in ms."""
    # A shell starts background jobs with SIGINT ignored, and we would inherit that.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    client = harness.Client(port, token)
    latencies = []
    try:
        ready_then_go()
        time.sleep(random.uniform(0, 0.1))
        while True:
            _, _, elapsed = client.call("get_status", op_id=op_id)
            latencies.append(elapsed * 1000)
            time.sleep(max(0.0, 0.1 - elapsed))
    except KeyboardInterrupt:
        print(" ".join(f"{value:.2f}" for value in latencies))


def follow_status(port: int, token: str, op_id: int) -> None:
    """A follower (target 5): what `long-task follow` does, from "go" until SIGINT: the detail
    with the last ETag and a long poll (`wait_for_change`), then its `--interval` (1 s) before
    asking again. Prints the number of requests it made."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"Authorization": f"Token {token}", "Accept": "application/json"}
    requests = 0
    try:
        ready_then_go()
        time.sleep(random.uniform(0, FOLLOW_INTERVAL))
        while True:
            path = f"/api/operations/{op_id}/?wait_for_change={FOLLOW_LONG_POLL_SECONDS}"
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            response.read()
            requests += 1
            headers["If-None-Match"] = response.headers.get("ETag") or headers.get("If-None-Match", "")
            time.sleep(FOLLOW_INTERVAL)
    except KeyboardInterrupt:
        print(requests)


def main() -> int:
    if sys.argv[1:2] == ["--poll-status"]:
        poll_status(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
        return 0
    if sys.argv[1:2] == ["--follow-status"]:
        follow_status(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
        return 0
    if sys.argv[1:2] == ["--baseline"]:
        harness.baseline_main(sys.argv[2], json.loads(sys.argv[3]), BASELINES)
        return 0
    names = [target.__name__ for target in TARGETS]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="1,000,000 rows (default 100,000)")
    parser.add_argument("--rows", type=int)
    parser.add_argument("--small-rows", type=int, help="the small file of the memory comparison")
    parser.add_argument(
        "--import-export-rows",
        type=int,
        default=100_000,
        help="the file of django-import-export's comparison (at most --rows)",
    )
    parser.add_argument("--samples", type=int, help="pauses measured")
    parser.add_argument("--clients", type=int, default=4, help="status pollers in target 5")
    parser.add_argument("--repeats", type=int, default=5, help="ABBA repetitions of each comparison")
    parser.add_argument("--idle-seconds", type=float, default=5.0, help="status polling of the idle server")
    parser.add_argument("--cpu-hog", action="store_true", help="a busy loop on one core while each side runs")
    parser.add_argument("--targets", nargs="+", choices=names, default=names, help="run only these")
    args = parser.parse_args()
    args.rows = args.rows or (1_000_000 if args.full else 100_000)
    args.small_rows = args.small_rows or max(1, args.rows // 10)
    args.samples = args.samples or (30 if args.full else 10)

    bench = harness.Harness(args)
    try:
        bench.setup()
        for target in TARGETS:
            if target.__name__ in args.targets:
                started = time.monotonic()
                target(bench)
                print(f"  {target.__name__}: {time.monotonic() - started:.0f} s", flush=True)
    finally:
        bench.teardown()
        bench.report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
