"""Fixtures: users and API clients, uploads, and real `process_tasks` workers that run against
the test database (SQLite file or PostgreSQL, whichever the run uses). Helpers live in
tests/support.py (shared with `make chaos`)."""

import os
from collections.abc import Callable

import pytest
from rest_framework.test import APIClient

from long_task.settings import file_storage
from operations import worker
from operations.models import Operation
from testbed.s3 import CREDENTIALS, Bucket, CuttingProxy, MotoServer

from .gate import Gate
from .support import (  # noqa: F401 (re-exported for the tests)
    HEADER,
    ROOT,
    Workers,
    csv_bytes,
    database_url,
    op_in_state,
    operation_in_state,
    overlapping_chunks,
    stored_lines,
    token_client,
    upload_file,
    wait_for,
)


@pytest.fixture(autouse=True)
def fast_password_hasher(settings):
    """Users are created with a password: hash it cheaply (the default costs ~0.5 s a user)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def empty_cache():
    """Throttle counters start at zero in each test (LocMemCache outlives a test)."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture(autouse=True)
def media_root(tmp_path, settings):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path / "media" / "incoming")
    os.makedirs(settings.FILE_UPLOAD_TEMP_DIR)
    return settings.MEDIA_ROOT


# --- S3: moto's server, started once by the suite ---------------------------------------------


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory) -> MotoServer:
    server = MotoServer(log_path=tmp_path_factory.mktemp("moto") / "moto.log")
    yield server
    server.stop()


@pytest.fixture
def s3(moto_server, settings, monkeypatch) -> Bucket:
    """The default storage is S3: a new bucket of the suite's moto server. Worker and web
    subprocesses get it with `**s3.env()`."""
    bucket = moto_server.new_bucket()
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    settings.STORAGES = {**settings.STORAGES, "default": file_storage(bucket.url, bucket.env())}
    settings.FILE_UPLOAD_TEMP_DIR = None
    settings.LONG_TASK_STORAGE_RETRIES = 2
    return bucket


@pytest.fixture
def s3_proxy(moto_server, s3, settings) -> CuttingProxy:
    """A proxy between this process (and workers given `**s3.env(s3_proxy.endpoint)`) and
    moto, that can cut or refuse connections."""
    proxy = CuttingProxy(moto_server.port)
    settings.STORAGES = {**settings.STORAGES, "default": file_storage(s3.url, s3.env(proxy.endpoint))}
    yield proxy
    proxy.close()


@pytest.fixture
def in_state(db) -> Callable[..., Operation]:
    """An operation in a given state, with a lease where the state has one (see support)."""
    return operation_in_state


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user("alice", password="alice-pw")


@pytest.fixture
def other_user(django_user_model):
    return django_user_model.objects.create_user("bob", password="bob-pw")


@pytest.fixture
def staff_user(django_user_model):
    """An operator: staff with the permission to see and control every operation."""
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user("root", password="root-pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="control_any_operation"))
    return user


@pytest.fixture
def api(user) -> APIClient:
    """alice, authenticated with her token."""
    return token_client(user)


@pytest.fixture
def register(api) -> Callable[..., int]:
    def register(client: APIClient | None = None, **body) -> int:
        response = (client or api).post("/register/", body, format="json")
        assert response.status_code == 201, response.content
        return response.json()["op_id"]

    return register


@pytest.fixture
def start_upload(api, register) -> Callable[..., int]:
    """Register an Upload and start it with `content`; return the op_id."""

    def start(content: bytes, client: APIClient | None = None, **fields) -> int:
        op_id = register(client)
        response = (client or api).post("/upload/", {"op_id": op_id, "file": upload_file(content), **fields})
        assert response.status_code == 202, response.content
        return op_id

    return start


@pytest.fixture
def workers(transactional_db, media_root, tmp_path, request):
    pool = Workers(media_root=media_root, log_dir=tmp_path)
    yield pool
    pool.stop_all()
    if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
        print(pool.logs())


@pytest.fixture
def gate(tmp_path) -> Callable[..., Gate]:
    """`gate("written", ...)`: a gate (tests/gate.py) for `workers.start(gate=...)`, holding
    its workers at those points (`committed` if none is named)."""

    def make(*points: str) -> Gate:
        return Gate(tmp_path / "gate", points or ("committed",))

    return make


# --- the worker loop in-process ---------------------------------------------------------------


class Chunks:
    """A fixed chunk size, and a hook called after each committed chunk with its count."""

    def __init__(self):
        self.size = 3
        self.count = 0
        self.after_chunk: Callable[[int], None] | None = None

    def sizer_class(self):
        chunks = self

        class FixedSizer:
            def __init__(self, *, target: float, **_):
                self.size = chunks.size

            def observe(self, rows: int, seconds: float) -> None:
                chunks.count += 1
                if chunks.after_chunk is not None:
                    chunks.after_chunk(chunks.count)

        return FixedSizer


@pytest.fixture
def chunks(monkeypatch) -> Chunks:
    """Fixed chunk sizes for `worker.work_operation` called in the test's own process."""
    fixed = Chunks()
    monkeypatch.setattr(worker, "ChunkSizer", fixed.sizer_class())
    return fixed


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.skipped and item.get_closest_marker("s3"):
        # The S3 tests run everywhere (the suite starts its own S3 server): a skip is a failure.
        report.outcome = "failed"
        report.longrepr = f"a test marked s3 may not be skipped: {report.longrepr}"
    setattr(item, f"rep_{report.when}", report)
    return report
