"""Target 13: resumable uploads (tus 1.0, `/api/uploads/`) as `long-task upload` sends them.

- Cuts: a big file sent in pieces of 50 MB through a proxy on a loopback port (testbed/s3.py's
  CuttingProxy) that resets the connection three times, in the middle of a piece's body, after
  about a quarter, a half and three quarters of the file; the client retries on its own. What
  the server was sent beyond the file's size is what the cuts cost: at most one piece per cut.
- Throughput: the same file through `long-task upload` in pieces (tus) and in one request
  (`--chunk-size` above its size: a multipart POST /upload/), alternated ABBA, on local disk
  and on S3 (moto's server): tus >= 0.8x one request, wall clock (MB/s, upload to started);
  beside them, pieces sent with `--checksum` (a SHA-256 of each piece on both sides), no goal.

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
    """Target 13: cuts re-send at most a piece each; tus throughput >= 0.8x one request."""
    from testbed.s3 import MotoServer

    megabytes = 1000 if h.args.full else min(200, max(2, h.args.rows // 500))
    path = write_csv(h.workdir / "upload.csv", megabytes * 1_000_000 // BYTES_PER_ROW)
    size = path.stat().st_size
    piece = min(PIECE_BYTES, size // 4)
    h.only(None)
    try:
        cuts_row(h, path, size, piece)
        media = Path(h.env["LONG_TASK_MEDIA_ROOT"])
        throughput_row(h, path, size, piece, "local disk", h.port, lambda name: (media / name).unlink())
        moto = MotoServer(log_path=h.workdir / "moto-uploads.log")
        h.processes.append(moto.process)
        # moto answers CompleteMultipartUpload only once it has joined the parts (S3 keeps the
        # connection alive meanwhile), which for a 1 GB file takes longer than the web's default
        # wait for the store; both sides complete one such upload.
        bucket = moto.new_bucket("uploads")
        env = {**bucket.env(), "LONG_TASK_STORE_WEB_DEADLINE_SECONDS": "120"}
        s3_web, s3_client = h.start_web("web-s3-uploads", env)
        try:

            def forget(name: str) -> None:
                bucket.client.delete_object(Bucket=bucket.name, Key=f"{bucket.prefix}/{name}")

            throughput_row(h, path, size, piece, "S3", s3_client.port, forget)
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


def upload(
    h: Harness, path: Path, url: str, *, chunk_size: str, checksum: bool = False, forget=lambda name: None
) -> float:
    """`long-task upload FILE --json`; the operation it started is terminated at once. The
    seconds from the command's start to its end. `forget(name)` deletes the stored file: the
    terminate waits for a worker, and every worker is stopped here, so without it a run's
    uploads (tens of GB at full size) would pile up on the disk and in moto's memory."""
    started = time.perf_counter()
    words = [str(LONG_TASK), "upload", str(path), "--chunk-size", chunk_size, "--json"]
    done = subprocess.run(
        words + (["--checksum"] if checksum else []),
        env=client_env(h, url),
        capture_output=True,
        text=True,
        timeout=1800,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"long-task upload exited {done.returncode}: {done.stderr[-2000:]}")
    op_id = json.loads(done.stdout)["op_id"]
    h.client.call("terminate", op_id=op_id, force=True)
    from operations.models import Operation

    forget(Operation.objects.get(pk=op_id).file.name)
    return seconds


def throughput_row(h: Harness, path: Path, size: int, piece: int, store: str, port: int, forget) -> None:
    """tus pieces, and pieces with their checksum, each next to one request; the sides alternate."""
    url = f"http://127.0.0.1:{port}"
    warm_up(h, url)
    rates: dict[str, list[float]] = {"tus": [], "one": [], "checksum": []}
    one_request = str(size + 1)
    for side in ["tus", "one", "checksum", "checksum", "one", "tus"] * 2:
        chunk_size = one_request if side == "one" else str(piece)
        seconds = upload(h, path, url, chunk_size=chunk_size, checksum=side == "checksum", forget=forget)
        rates[side].append(size / 1e6 / seconds)
    for side, what, goal in [("tus", "", ">= 0.8"), ("checksum", " with --checksum (SHA-256)", "")]:
        ratio = median(rates[side]) / median(rates["one"])
        h.add(
            Row(
                f"13. upload {size / 1e6:,.0f} MB to {store}: tus pieces of {piece / 1e6:.1f} MB{what}"
                " vs one request (MB/s)",
                _rates(rates[side]),
                _rates(rates["one"]),
                wall_ratio=f"{ratio:.2f}",
                goal=goal,
                passed=ratio >= 0.8 if goal else None,
            )
        )


def _rates(rates: list[float]) -> str:
    return f"{median(rates):,.0f} ({min(rates):,.0f}-{max(rates):,.0f})"


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
            f"13. upload {size / 1e6:,.0f} MB in pieces of {piece / 1e6:.1f} MB, {cuts} connections reset "
            "mid-upload: re-sent",
            f"{resent / 1e6:,.1f} MB ({resent / max(cuts, 1) / piece:.2f} piece per cut)",
            goal="<= 1 piece per cut",
            passed=cuts == 3 and resent <= cuts * piece,
        )
    )
