"""Target 11: resumable uploads (tus 1.0, `/api/uploads/`) as `long-task upload` sends them.

- Cuts: a big file sent in pieces of 50 MB through a proxy on a loopback port (testbed/s3.py's
  CuttingProxy) that resets the connection three times, in the middle of a piece's body, after
  about a quarter, a half and three quarters of the file; the client retries on its own. What
  the server was sent beyond the file's size is what the cuts cost: at most one piece per cut.
- Throughput: the same file through `long-task upload` in pieces (tus) and in one request
  (`--chunk-size` above its size: a multipart POST /upload/), alternated ABBA, on local disk
  and on S3 (moto's server): tus >= 0.8x one request, wall clock (MB/s, upload to started).

No worker imports these files: every worker is stopped while they arrive, and each operation
is terminated as soon as it has started.
"""

import json
import random
import subprocess
import time
from pathlib import Path

from harness import PYTHON, Harness, Row, median, wait_for, write_csv

# The client's default piece; a smaller file (a smoke run's) is cut in four pieces at least.
PIECE_BYTES = 50_000_000
BYTES_PER_ROW = 75  # write_csv's rows, about
LONG_TASK = Path(PYTHON).parent / "long-task"


def resumable_uploads(h: Harness) -> None:
    """Target 11: cuts re-send at most a piece each; tus throughput >= 0.8x one request."""
    from testbed.s3 import MotoServer

    megabytes = 1000 if h.args.full else min(200, max(2, h.args.rows // 500))
    path = write_csv(h.workdir / "upload.csv", megabytes * 1_000_000 // BYTES_PER_ROW)
    size = path.stat().st_size
    piece = min(PIECE_BYTES, size // 4)
    h.only(None)
    try:
        cuts_row(h, path, size, piece)
        throughput_row(h, path, size, piece, "local disk", h.port)
        moto = MotoServer(log_path=h.workdir / "moto-uploads.log")
        h.processes.append(moto.process)
        s3_web, s3_client = h.start_web("web-s3-uploads", moto.new_bucket("uploads").env())
        try:
            throughput_row(h, path, size, piece, "S3", s3_client.port)
        finally:
            h.stop(s3_web)
            moto.stop()
    finally:
        path.unlink(missing_ok=True)
        h.continue_workers()


def client_env(h: Harness, url: str) -> dict[str, str]:
    return {
        **h.env,
        "LONG_TASK_URL": url,
        "LONG_TASK_TOKEN": h.token,
        "LONG_TASK_STATE_DIR": str(h.workdir / "client-state"),
    }


def upload(h: Harness, path: Path, url: str, *, chunk_size: str) -> float:
    """`long-task upload FILE --json`; the operation it started is terminated at once. The
    seconds from the command's start to its end."""
    started = time.perf_counter()
    done = subprocess.run(
        [str(LONG_TASK), "upload", str(path), "--chunk-size", chunk_size, "--json"],
        env=client_env(h, url),
        capture_output=True,
        text=True,
        timeout=1800,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"long-task upload exited {done.returncode}: {done.stderr[-2000:]}")
    h.client.call("terminate", op_id=json.loads(done.stdout)["op_id"], force=True)
    return seconds


def throughput_row(h: Harness, path: Path, size: int, piece: int, store: str, port: int) -> None:
    url = f"http://127.0.0.1:{port}"
    warm_up(h, url)
    rates: dict[str, list[float]] = {"tus": [], "one": []}
    one_request = str(size + 1)
    for side in ["tus", "one", "one", "tus"] * 2:
        seconds = upload(h, path, url, chunk_size=str(piece) if side == "tus" else one_request)
        rates[side].append(size / 1e6 / seconds)
    ratio = median(rates["tus"]) / median(rates["one"])
    h.add(
        Row(
            f"11. upload {size / 1e6:,.0f} MB to {store}: tus pieces of {piece / 1e6:.1f} MB vs one request (MB/s)",
            f"{median(rates['tus']):,.0f} ({min(rates['tus']):,.0f}-{max(rates['tus']):,.0f})",
            f"{median(rates['one']):,.0f} ({min(rates['one']):,.0f}-{max(rates['one']):,.0f})",
            wall_ratio=f"{ratio:.2f}",
            goal=">= 0.8",
            passed=ratio >= 0.8,
        )
    )


def warm_up(h: Harness, url: str) -> None:
    """A small file each way, untimed: a web process's first upload (its S3 client, its first
    connections) would otherwise count against whichever side comes first."""
    small = write_csv(h.workdir / "warm-up.csv", 20_000)
    try:
        size = small.stat().st_size
        for chunk_size in (size // 2, size + 1):
            upload(h, small, url, chunk_size=str(chunk_size))
    finally:
        small.unlink(missing_ok=True)


def cuts_row(h: Harness, path: Path, size: int, piece: int) -> None:
    from testbed.s3 import CuttingProxy

    proxy = CuttingProxy(h.port)
    rng = random.Random(11)
    client = subprocess.Popen(
        [str(LONG_TASK), "upload", str(path), "--chunk-size", str(piece), "--json"],
        env=client_env(h, proxy.endpoint),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    cuts = 0
    try:
        for fraction in (0.25, 0.5, 0.75):
            # Mid-body: once the proxy has passed on this much of the file, and some of a piece.
            at = fraction * size + rng.uniform(0.1, 0.9) * piece
            wait_for(lambda at=at: proxy.request_bytes >= at, timeout=600, interval=0.005, what=f"{at:,.0f} bytes")
            cuts += 1 if proxy.cut_all() else 0
        out, err = client.communicate(timeout=1800)
    finally:
        if client.poll() is None:
            client.kill()
        proxy.close()
    if client.returncode != 0:
        raise RuntimeError(f"long-task upload exited {client.returncode}: {out[-2000:]} {err[-2000:]}")
    h.client.call("terminate", op_id=json.loads(out)["op_id"], force=True)
    resent = proxy.request_bytes - size
    h.add(
        Row(
            f"11. upload {size / 1e6:,.0f} MB in pieces of {piece / 1e6:.1f} MB, {cuts} connections reset "
            "mid-upload: re-sent",
            f"{resent / 1e6:,.1f} MB ({resent / max(cuts, 1) / piece:.2f} piece per cut)",
            goal="<= 1 piece per cut",
            passed=cuts == 3 and resent <= cuts * piece,
        )
    )
