"""Request bodies under the production server of the Procfile (gunicorn, uvicorn's workers,
long_task.asgi): a body is read as the view reads it, never spooled to the web's disk first.

The server's temporary directory (TMPDIR) is one of the test's own. What the web's processes
hold there is measured through their open files (/proc/<pid>/fd), since a temporary file is
unlinked, or never named at all (O_TMPFILE), while it is in use. Each body is held open before
its last bytes, so that a server that spools the body before the view is caught with the spool
in hand."""

import contextlib
import os
import select
import socket
import subprocess
import threading
from pathlib import Path

import psutil
import pytest
from rest_framework.authtoken.models import Token

from operations.models import Operation
from tests.support import ROOT, csv_bytes, free_port, port_open, procfile, procfile_environment, stored_lines, wait_for

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]

MiB = 1024 * 1024
BOUNDARY = "long-task-test-boundary"
# What the web may hold in its temporary directory at any moment: nothing of the body.
TEMP_BOUND = MiB


class Web:
    def __init__(self, process: subprocess.Popen, port: int, temp_dir: Path):
        self.process, self.port, self.temp_dir = process, port, temp_dir
        self.most_in_temp = 0
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def pids(self) -> list[int]:
        return [self.process.pid] + [child.pid for child in psutil.Process(self.process.pid).children()]

    def bytes_in_temp(self) -> int:
        """Bytes of the files under the temporary directory that the web's processes hold open
        or that are named there."""
        total, seen = 0, set()
        for pid in self.pids():
            for fd in Path(f"/proc/{pid}/fd").glob("*"):
                try:
                    if os.readlink(fd).startswith(str(self.temp_dir)):
                        stat = os.stat(fd)
                        if (stat.st_dev, stat.st_ino) not in seen:
                            seen.add((stat.st_dev, stat.st_ino))
                            total += stat.st_size
                except OSError:  # closed meanwhile
                    continue
        return total + sum(path.stat().st_size for path in self.temp_dir.rglob("*") if path.is_file())

    def sample(self) -> int:
        now = self.bytes_in_temp()
        self.most_in_temp = max(self.most_in_temp, now)
        return now

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(0.01)

    def stop(self) -> None:
        self._stop.set()
        self._sampler.join()


@pytest.fixture
def web(media_root, tmp_path):
    """The Procfile's web line as a platform runs it, its TMPDIR a directory of the test's."""
    port, temp_dir = free_port(), tmp_path / "web-tmp"
    temp_dir.mkdir()
    env = procfile_environment(port=port, media_root=media_root, TMPDIR=str(temp_dir))
    log_path = tmp_path / "web.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            ["sh", "-c", procfile()["web"]], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    server = None
    try:
        wait_for(lambda: port_open(port), timeout=60, what="gunicorn")
        wait_for(lambda: len(psutil.Process(process.pid).children()) == 2, timeout=60, what="its two workers")
        server = Web(process, port, temp_dir)
        yield server
    finally:
        if server is not None:
            server.stop()
        process.terminate()
        process.wait(timeout=60)


def multipart(fields: dict[str, str], file: bytes) -> tuple[bytes, bytes]:
    """A multipart body of `fields` and a file part, as (all but its last bytes, its last bytes)."""
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields.items()
    ]
    head = "".join(parts) + (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.csv"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    )
    return head.encode() + file, f"\r\n--{BOUNDARY}--\r\n".encode()


class HeldPost:
    """A POST whose body is sent, in a thread of its own, up to its last bytes, which wait for
    `finish`; the server may answer before."""

    def __init__(self, web: Web, path: str, body: tuple[bytes, bytes], headers: dict[str, str]):
        self.sock = socket.create_connection(("127.0.0.1", web.port), timeout=120)
        self.sent, self.tail = body
        lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Type: multipart/form-data; boundary={BOUNDARY}"]
        lines += [f"Content-Length: {len(self.sent) + len(self.tail)}"] + [f"{k}: {v}" for k, v in headers.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.done = threading.Event()
        threading.Thread(target=self._send, daemon=True).start()

    def _send(self) -> None:
        # The server may answer, and close the connection, before the end.
        with contextlib.suppress(OSError):
            self.sock.sendall(self.sent)
        self.done.set()

    def answered(self) -> bool:
        return bool(select.select([self.sock], [], [], 0)[0])

    def status(self) -> int:
        """The answer's status (after the rest of the body, if the server waits for it)."""
        if not self.answered():
            self.done.wait(120)
            self.sock.sendall(self.tail)
        head = b""
        while b"\r\n" not in head:
            head += self.sock.recv(4096)
        return int(head.split()[1])

    def close(self) -> None:
        self.sock.close()


def csrf_form(web: Web) -> tuple[str, str]:
    """The admin login form's CSRF cookie and token, as a browser has them."""
    sock = socket.create_connection(("127.0.0.1", web.port), timeout=60)
    sock.sendall(b"GET /admin/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    sock.close()
    text = answer.decode(errors="replace")
    cookie = text.split("csrftoken=", 1)[1].split(";", 1)[0]
    token = text.split('name="csrfmiddlewaretoken" value="', 1)[1].split('"', 1)[0]
    return cookie, token


@pytest.mark.parametrize("endpoint", ["admin login with its CSRF cookie", "API create, anonymous"])
def test_a_large_body_to_a_view_that_takes_no_file_reaches_no_disk(web, media_root, endpoint):
    file = csv_bytes(600_000)  # about 30 MB
    if endpoint.startswith("admin"):
        cookie, token = csrf_form(web)
        fields = {"csrfmiddlewaretoken": token, "username": "alice", "password": "wrong"}
        post = HeldPost(web, "/admin/login/", multipart(fields, file), {"Cookie": f"csrftoken={cookie}"})
    else:
        post = HeldPost(web, "/api/operations/", multipart({"op_type": "Upload"}, file), {})
    try:
        wait_for(lambda: post.done.is_set() or post.answered(), timeout=120, what="the body sent, or an answer")
        web.sample()  # a server that spools the body before the view holds it now, waiting for the rest
        status = post.status()
    finally:
        post.close()
    assert 400 <= status < 500 or (endpoint.startswith("admin") and status == 200), status
    assert web.most_in_temp < TEMP_BOUND, f"{web.most_in_temp} bytes in the web's temporary directory"
    assert not [path for path in media_root.rglob("*") if path.is_file()]


def test_an_upload_streams_to_the_store_without_the_temporary_directory_and_imports_exactly(
    web, media_root, user, register, workers
):
    rows = 200_000  # about 9 MB, past the memory that Django's spool would keep before going to disk
    file = csv_bytes(rows)
    op_id = register()
    token = Token.objects.get_or_create(user=user)[0].key
    post = HeldPost(web, "/upload/", multipart({"op_id": str(op_id)}, file), {"Authorization": f"Token {token}"})
    try:
        wait_for(post.done.is_set, timeout=120, what="the body sent up to its last bytes")

        def stored_so_far() -> int:
            return sum(path.stat().st_size for path in media_root.rglob("*") if path.is_file())

        held = len(file) - 2 * MiB  # all of it that the sockets' buffers do not hold
        wait_for(
            lambda: stored_so_far() >= held or web.sample() >= held, timeout=120, what="the held body in the server"
        )
        assert web.most_in_temp < TEMP_BOUND, f"{web.most_in_temp} bytes in the web's temporary directory"
        assert post.status() == 202
    finally:
        post.close()
    workers.start()
    wait_for(lambda: Operation.objects.get(pk=op_id).state == Operation.State.COMPLETED, timeout=300, what="imported")
    assert stored_lines(op_id) == list(range(1, rows + 1))
    assert web.most_in_temp < TEMP_BOUND, f"{web.most_in_temp} bytes in the web's temporary directory"
