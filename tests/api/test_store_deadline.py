"""A file store that hangs costs a web request a bounded time, then a clear 503; retries belong
to workers (SPEC §8). The messages that reach users name no endpoint, bucket or key: the log
has them."""

import re
import socket
import threading
import time

import pytest
from django.test import Client

from long_task.settings import file_storage
from operations.models import Operation
from testbed.s3 import SilentStore
from tests.support import csv_bytes, token_client, upload_file

pytestmark = [pytest.mark.s3]
UNAVAILABLE = {"message": "The file store is not answering; try again"}
DEADLINE = 1.0
# Room for everything but the wait on the store (a loaded machine, the test client).
MARGIN = 10.0


@pytest.fixture
def silent_store(s3, settings):
    """The default storage is S3 at an endpoint that accepts connections and never answers."""
    silent = SilentStore()
    settings.STORAGES = {**settings.STORAGES, "default": file_storage(s3.url, s3.env(silent.endpoint))}
    settings.LONG_TASK_STORE_WEB_DEADLINE_SECONDS = DEADLINE
    yield silent
    silent.close()


def post_in_a_thread(client: Client, url: str, data) -> tuple[threading.Thread, dict]:
    """The request in a thread of its own: a test that would otherwise wait for minutes fails at
    the deadline's margin instead."""
    answer: dict = {}

    def post() -> None:
        from django.db import connections

        try:
            started = time.monotonic()
            answer["response"] = client.post(url, data)
            answer["seconds"] = time.monotonic() - started
        finally:
            connections.close_all()

    thread = threading.Thread(target=post, daemon=True)
    thread.start()
    return thread, answer


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("url", ["/upload/", "/api/operations/{op_id}/start/"])
def test_an_upload_to_a_store_that_never_answers_is_a_503_within_the_deadline(url, user, silent_store, s3, caplog):
    api = token_client(user)
    op_id = api.post("/register/", {}, format="json").json()["op_id"]
    thread, answer = post_in_a_thread(
        api, url.format(op_id=op_id), {"op_id": op_id, "file": upload_file(csv_bytes(100))}
    )
    thread.join(timeout=DEADLINE + MARGIN)
    assert not thread.is_alive(), f"the upload still waits for the store after {DEADLINE + MARGIN} s"
    response = answer["response"]
    assert (response.status_code, response.json()) == (503, UNAVAILABLE)
    assert silent_store.connections == 1  # a store that does not answer is not asked again
    # The details are in the log, and only there.
    assert silent_store.endpoint in caplog.text and "storing uploads/" in caplog.text
    assert Operation.objects.get(pk=op_id).state == Operation.State.REGISTERED


@pytest.mark.django_db(transaction=True)
def test_the_console_import_answers_503_within_the_deadline(admin_user, silent_store):
    client = Client()
    client.force_login(admin_user)
    thread, answer = post_in_a_thread(
        client, "/admin/operations/operation/import/", {"file": upload_file(csv_bytes(100))}
    )
    thread.join(timeout=DEADLINE + MARGIN)
    assert not thread.is_alive()
    response = answer["response"]
    assert response.status_code == 503
    assert UNAVAILABLE["message"] in response.content.decode()
    assert silent_store.endpoint not in response.content.decode()


@pytest.mark.django_db
def test_a_web_request_does_not_retry_a_store_that_refuses(api, register, s3, s3_proxy, settings, caplog):
    """Workers retry (LONG_TASK_STORAGE_RETRIES, botocore's own quick retries first); a web
    request answers at once: a connection closed before any answer is tried once more, at once
    (a pooled connection the store had closed looks the same), and that is all."""
    settings.LONG_TASK_STORAGE_RETRIES = 5
    op_id = register()
    s3_proxy.refuse = True
    s3_proxy.cut_all()
    before = s3_proxy.connections
    response = api.post("/upload/", {"op_id": op_id, "file": upload_file(csv_bytes(100))})
    assert (response.status_code, response.json()) == (503, UNAVAILABLE)
    assert s3_proxy.connections - before <= 2
    assert re.search(r"storing uploads/[0-9a-f]+\.csv failed 2 times: .*127\.0\.0\.1", caplog.text)
    assert "retrying in" not in caplog.text  # no backoff

    s3_proxy.refuse = False  # back: the same upload goes through
    response = api.post("/upload/", {"op_id": op_id, "file": upload_file(csv_bytes(100))})
    assert response.status_code == 202, response.content


def test_the_test_proxy_passes_an_answer_on_whole_to_a_client_that_reads_it_late(s3, s3_proxy):
    """The test bed itself: moto ends each connection after its answer, and the proxy passes
    that end on after the answer, not as a reset, which would make the client's kernel drop an
    answer not yet read (a loaded machine: a 200 the client saw as a closed connection)."""
    with socket.create_connection(("127.0.0.1", s3_proxy.port)) as client:
        client.sendall(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        time.sleep(0.5)  # the client reads late; whatever the proxy does meanwhile, the answer waits
        answer = b""
        while piece := client.recv(65536):
            answer += piece
    assert answer.startswith(b"HTTP/1.") and b"\r\n\r\n" in answer


@pytest.mark.django_db
def test_no_message_names_the_endpoint_the_bucket_or_the_key(api, register, s3, s3_proxy):
    op_id = register()
    s3_proxy.refuse = True
    s3_proxy.cut_all()
    response = api.post("/upload/", {"op_id": op_id, "file": upload_file(csv_bytes(100))})
    text = response.content.decode()
    assert response.status_code == 503
    for internal in (s3_proxy.endpoint, "127.0.0.1", s3.name, s3.prefix + "/", "uploads/", ".csv"):
        assert internal not in text
