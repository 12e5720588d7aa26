"""Through a real proxy with a small body limit: nginx (Debian's package) on a loopback port in
front of a live server, `client_max_body_size 8m` as many deployments have. A file of 50 MB in
one request is refused by the proxy (413); the same file sent by `long-task upload` in pieces
under the limit (tus) imports completely."""

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from operations.models import Operation, UploadedRow
from testbed.machine import free_port, port_open, wait_for
from tests.processes.test_client import long_task
from tests.processes.test_client_tus import server  # noqa: F401 (the fixture)
from tests.support import csv_bytes

S = Operation.State
NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)
BODY_LIMIT = "8m"
FILE_BYTES = 50_000_000

pytestmark = [pytest.mark.proxy, pytest.mark.processes]
if NGINX is None and os.environ.get("LONG_TASK_REQUIRE_NGINX"):
    # CI installs nginx and sets this: there, a missing nginx is a failure, not a skip.
    raise RuntimeError("LONG_TASK_REQUIRE_NGINX is set but nginx is missing")
if NGINX is None:
    pytestmark.append(
        pytest.mark.skip(reason="the proxy tests need nginx (apt-get install nginx); .ci/run installs it")
    )

# Everything nginx writes stays in the test's directory; it runs in the foreground, so that the
# fixture owns the process. The request body is streamed to the app as it arrives
# (proxy_request_buffering off), as a tus server wants: a piece reaches the app, and the
# offset it confirms, while it is being sent, and a piece cut half-way keeps what arrived,
# instead of being spooled whole to the proxy's disk first and lost with the link.
NGINX_CONF = """\
daemon off;
{user}
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {root}/access.log;
    client_body_temp_path {root}/client_body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    client_max_body_size {limit};
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://127.0.0.1:{app_port};
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_request_buffering off;
            proxy_read_timeout 300s;
        }}
    }}
}}
"""


@pytest.fixture
def nginx(server, tmp_path):  # noqa: F811 (the fixture imported above)
    """nginx in front of the live server: the client's environment pointed at the proxy."""
    root = tmp_path / "nginx"
    root.mkdir()
    port = free_port()
    conf = root / "nginx.conf"
    # Run as root, nginx would hand its workers to `nobody`, who cannot write here.
    user = "user root;" if os.geteuid() == 0 else ""
    conf.write_text(NGINX_CONF.format(root=root, user=user, limit=BODY_LIMIT, port=port, app_port=server["port"]))
    log = open(root / "nginx.out", "wb")  # noqa: SIM115 (closed at teardown)
    process = subprocess.Popen(
        [NGINX, "-p", str(root), "-c", str(conf), "-e", str(root / "error.log")],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for(lambda: port_open(port) or process.poll() is not None, timeout=30, what="nginx")
        assert process.poll() is None, (root / "nginx.out").read_text() + (root / "error.log").read_text()
        yield {**server, "LONG_TASK_URL": f"http://127.0.0.1:{port}"}
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the master and its worker: a group of their own
        process.wait()
        log.close()


def big_csv(path: Path) -> bytes:
    rows = FILE_BYTES // len(csv_bytes(1000)) * 1000 + 1000
    content = csv_bytes(rows)
    assert len(content) > FILE_BYTES
    path.write_bytes(content)
    return content


@pytest.mark.django_db(transaction=True)
def test_a_big_file_in_one_request_is_refused_by_the_proxy_and_in_pieces_imports(nginx, workers, tmp_path):
    workers.start()
    path = tmp_path / "big.csv"
    content = big_csv(path)
    lines = content.count(b"\n") - 1

    one_request = long_task(nginx, "upload", str(path), "--chunk-size", "100MB", timeout=300)
    assert one_request.returncode == 3, one_request.stdout + one_request.stderr
    assert "HTTP 413 Request Entity Too Large" in one_request.stderr
    assert not Operation.objects.exclude(state=S.TERMINATED).exists(), "the operation is withdrawn"

    in_pieces = long_task(
        nginx, "upload", str(path), "--chunk-size", "5MB", "--follow", "--interval", "0.5", timeout=600
    )
    assert in_pieces.returncode == 0, in_pieces.stdout + in_pieces.stderr
    op = Operation.objects.exclude(state=S.TERMINATED).get()
    assert (op.state, op.file_size, op.lines_finished, op.lines_failed) == (S.COMPLETED, len(content), lines, 0)
    assert UploadedRow.objects.filter(operation_id=op.pk).count() == lines
