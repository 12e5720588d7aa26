"""A gate that holds test workers at chunk boundaries, so that a test acts mid-import at a
point it chooses instead of racing the import's speed.

Both sides meet in a directory. A worker started with LONG_TASK_TEST_GATE=<directory> and
LONG_TASK_TEST_GATE_HOLD=<points> (tests/worker_hooks), at each of those points of an operation:

- writes `<op>-<point>-<n>-<pid>.arrived` (n counts that point of that operation in the process);
- waits until `<op>-<point>-<n>-<pid>.release`, `open-<op>` or `open` exists, then goes on.

The points are the worker's signals: `written` (inside the chunk's transaction, rows written,
not committed), `committed` (after the chunk and its checkpoint committed) and `rollback` (after
a rollback chunk committed). A worker held longer than HOLD_SECONDS fails its operation: a test
that forgets to release fails instead of hanging.
"""

import time
from dataclasses import dataclass
from pathlib import Path

from testbed.machine import wait_for

POINTS = ("written", "committed", "rollback")
HOLD_SECONDS = 120.0
OPEN = "open"


@dataclass(frozen=True)
class Arrival:
    op_id: int
    point: str
    n: int
    pid: int

    @property
    def name(self) -> str:
        return f"{self.op_id}-{self.point}-{self.n}-{self.pid}"


class GateTimeout(RuntimeError):
    pass


# --- the worker's side ------------------------------------------------------------------------


def hold(directory: Path, arrival: Arrival) -> None:
    """Called by a worker at a held point: announce the arrival, wait for the release."""
    releases = [directory / f"{arrival.name}.release", directory / f"{OPEN}-{arrival.op_id}", directory / OPEN]
    if any(path.exists() for path in releases[1:]):
        return
    (directory / f"{arrival.name}.arrived").touch()
    deadline = time.monotonic() + HOLD_SECONDS
    while not any(path.exists() for path in releases):
        if time.monotonic() > deadline:
            raise GateTimeout(f"held at {arrival.name} for {HOLD_SECONDS:.0f}s: the test never released it")
        time.sleep(0.005)


# --- the test's side --------------------------------------------------------------------------


class Gate:
    """The test's side: `workers.start(gate=gate)` starts a worker held at `gate.points`."""

    def __init__(self, directory: Path, points: tuple[str, ...] = ("committed",)):
        assert set(points) <= set(POINTS), points
        self.directory = directory
        self.points = points
        directory.mkdir(parents=True, exist_ok=True)

    def env(self) -> dict[str, str]:
        return {"LONG_TASK_TEST_GATE": str(self.directory), "LONG_TASK_TEST_GATE_HOLD": ",".join(self.points)}

    def arrivals(self, op_id: int, point: str) -> list[Arrival]:
        """Every arrival of `op_id` at `point` so far, released or not, in the order of n."""
        found = []
        for path in self.directory.glob(f"{op_id}-{point}-*.arrived"):
            _, _, n, pid = path.stem.split("-")
            found.append(Arrival(op_id, point, int(n), int(pid)))
        return sorted(found, key=lambda arrival: (arrival.n, arrival.pid))

    def released(self, arrival: Arrival) -> bool:
        return (self.directory / f"{arrival.name}.release").exists()

    def wait_held(self, op_id: int, point: str = "committed", *, n: int | None = None, timeout: float = 60) -> Arrival:
        """The arrival at which a worker now waits at `point` of `op_id` (the n-th, if given)."""

        def held():
            waiting = [a for a in self.arrivals(op_id, point) if not self.released(a) and n in (None, a.n)]
            return waiting[0] if waiting else None

        return wait_for(held, timeout=timeout, what=f"a worker held at {point} {n or ''} of operation {op_id}")

    def release(self, arrival: Arrival) -> None:
        (self.directory / f"{arrival.name}.release").touch()

    def pass_through(self, op_id: int, point: str, chunks: int) -> Arrival:
        """Let `chunks` arrivals at `point` of `op_id` go by; return the next one, held."""
        for _ in range(chunks):
            self.release(self.wait_held(op_id, point))
        return self.wait_held(op_id, point)

    def open(self, op_id: int) -> None:
        """Workers of `op_id` go on, now and at every later point."""
        (self.directory / f"{OPEN}-{op_id}").touch()

    def open_all(self) -> None:
        """Every worker goes on, now and at every later point."""
        (self.directory / OPEN).touch()
