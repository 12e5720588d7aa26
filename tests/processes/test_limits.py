"""What a wide header costs, with a real web server and real workers (SPEC §7, §8)."""

import http.client
import json
import signal
import time
import uuid

import pytest
from rest_framework.authtoken.models import Token

from operations.models import Operation
from testbed.machine import peak_rss_kib
from tests.api.test_limits import wide_csv
from tests.support import op_in_state, running_server, wait_for

pytestmark = [pytest.mark.processes, pytest.mark.django_db(transaction=True)]
S = Operation.State
MIB = 1024


def multipart(fields: dict, file: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="wide.csv"\r\n'
        "Content-Type: text/csv\r\n\r\n".encode()
        + file
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def post(port: int, path: str, token: str, body: bytes, content_type: str) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("POST", path, body, {"Authorization": f"Token {token}", "Content-Type": content_type})
    response = conn.getresponse()
    answer = (response.status, json.loads(response.read() or b"{}"))
    conn.close()
    return answer


def test_a_million_column_header_is_refused_and_no_process_grows(user, register, workers, media_root, tmp_path):
    """A 7 MB header of 1,000,000 column names would cost a worker gigabytes on every claim or
    resume: the upload is refused, the web server reads at most LONG_TASK_CSV_HEADER_BYTES of
    it, and no worker grows."""
    token = Token.objects.get_or_create(user=user)[0].key
    worker = workers.start()
    op_id = register()
    body, content_type = multipart({"op_id": op_id}, wide_csv(1_000_000, 1))
    with running_server(media_root=media_root, log_path=tmp_path / "web.log") as (server, port):
        status, answer = post(port, "/upload/", token, body, content_type)
        web_peak = peak_rss_kib(server.pid)
    time.sleep(1.0)  # a queued operation would have been claimed by now
    worker_peak = peak_rss_kib(worker.pid)
    print(f"1,000,000 columns: web peak {web_peak / MIB:.1f} MiB, worker peak {worker_peak / MIB:.1f} MiB")
    assert (status, answer) == (400, {"message": "The header row is longer than 65536 bytes"})
    assert Operation.objects.get(pk=op_id).state == S.REGISTERED
    assert web_peak <= 100 * MIB, f"web peak RSS {web_peak} KiB"
    assert worker_peak <= 100 * MIB, f"worker peak RSS {worker_peak} KiB"


def test_a_header_at_the_column_limit_imports_in_bounded_worker_memory(start_upload, workers, settings):
    """1,000 columns (the default limit) and 2,000 rows of them: the worker stays under 100 MiB."""
    columns = settings.LONG_TASK_CSV_MAX_COLUMNS
    worker = workers.start()
    op_id = start_upload(wide_csv(columns, 2_000))
    wait_for(lambda: op_in_state(op_id, S.COMPLETED), timeout=120, what="completed")
    peak = peak_rss_kib(worker.pid)
    worker.send_signal(signal.SIGKILL)
    print(f"{columns} columns x 2,000 rows: worker peak {peak / MIB:.1f} MiB")
    op = Operation.objects.get(pk=op_id)
    assert (op.lines_finished, op.lines_failed, len(op.columns)) == (2_000, 0, columns)
    assert peak <= 100 * MIB, f"worker peak RSS {peak} KiB"
