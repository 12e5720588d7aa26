"""`long-task upload` over tus against a small tus server in a thread (real HTTP on a loopback
port, so that a cut is a connection really closed mid-piece): pieces, the state file, Ctrl-C and
the same command again, retries with back-off. The real server: tests/processes/test_client_tus.py."""

import base64
import hashlib
import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from long_task_client import cli
from long_task_client.upload_state import FileIdentity, Unfinished, UploadState, entry_key
from long_task_shared import outcome

PIECE = 1000


class TusFake:
    """The server's side: uploads in memory, operations as dicts, and the cuts to make."""

    def __init__(self):
        self.uploads: dict[str, dict] = {}
        self.operations: dict[int, dict] = {}
        self.requests: list[tuple[str, str]] = []
        self.ids = itertools.count(1)
        # {n: k}: the n-th PATCH (from 1) keeps its first k bytes, then the connection is closed.
        self.cuts: dict[int, int] = {}
        # {n: status}: the n-th PATCH is answered with this status, nothing kept.
        self.refusals: dict[int, int] = {}
        self.patches = 0
        self.checksums: list[str] = []
        # Starts refused with a 409 before one is taken: the server still finishing the upload.
        self.unfinished_starts = 0
        self.registered: list[bytes] = []
        # Called once a piece is kept, before the answer: a change to the file meanwhile.
        self.after_piece = lambda: None

    def asked(self, method: str) -> list[str]:
        return [path for asked, path in self.requests if asked == method]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake: TusFake

    def log_message(self, *args) -> None:
        pass

    def answer(self, status: int, body: dict | None = None, **headers: str) -> None:
        payload = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        for name, value in {"Tus-Resumable": "1.0.0", **headers}.items():
            self.send_header(name.replace("_", "-"), value)
        self.send_header("Content-Length", str(len(payload)))
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(payload)

    def body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_OPTIONS(self) -> None:
        self.fake.requests.append(("OPTIONS", self.path))
        self.answer(
            204,
            Tus_Version="1.0.0",
            Tus_Extension="creation,termination,checksum",
            Tus_Checksum_Algorithm="md5,sha1",
            Tus_Max_Size="1000000",
        )

    def do_HEAD(self) -> None:
        self.fake.requests.append(("HEAD", self.path))
        upload = self.fake.uploads.get(self.path)
        if upload is None:
            self.answer(404)
            return
        self.answer(200, Upload_Offset=str(len(upload["data"])), Upload_Length=str(upload["length"]))

    def do_DELETE(self) -> None:
        self.fake.requests.append(("DELETE", self.path))
        self.answer(204 if self.fake.uploads.pop(self.path, None) else 404)

    def do_POST(self) -> None:
        fake = self.fake
        path = self.path.split("?", 1)[0]  # the client names the operation of /upload/ in its query too
        fake.requests.append(("POST", path))
        if path == "/api/uploads/":
            url = f"/api/uploads/{next(fake.ids)}/"
            fake.uploads[url] = {"data": b"", "length": int(self.headers["Upload-Length"]), "meta": self.metadata()}
            self.answer(201, Location=f"http://127.0.0.1:{self.server.server_port}{url}")
        elif path == "/register/":
            op_id = next(fake.ids)
            body = self.body()
            fake.registered.append(body)
            fake.operations[op_id] = {"op_id": op_id, "state": "registered", "options": json.loads(body)}
            self.answer(201, {"op_id": op_id, "state": "registered"})
        elif path == "/upload/":
            self.start()
        elif path == "/terminate/":
            op = fake.operations[json.loads(self.body())["op_id"]]
            op["state"] = "terminated"
            self.answer(200, {"op_id": op["op_id"], "state": "terminated"})

    def start(self) -> None:
        body = self.body()
        if self.fake.unfinished_starts:
            self.fake.unfinished_starts -= 1
            self.answer(409, {"message": "The upload has N of N bytes: send the rest first"})
            return
        if self.headers["Content-Type"].startswith("multipart/form-data"):
            op_id = int(body.split(b'name="op_id"\r\n\r\n')[1].split(b"\r\n")[0])
            data = b"(in one request)"
        else:
            form = {key: values[0] for key, values in parse_qs(body.decode()).items()}
            op_id = int(form["op_id"])
            data = self.fake.uploads.pop("/" + form["upload"].split("/", 3)[3])["data"]
        op = self.fake.operations[op_id]
        op.update(state="queued", data=data)
        self.answer(202, {"op_id": op_id, "state": "queued"})

    def do_GET(self) -> None:
        self.fake.requests.append(("GET", self.path))
        op = self.fake.operations.get(int(self.path.strip("/").split("/")[-1]))
        self.answer(200, op) if op else self.answer(404, {"message": "Operation ID Invalid"})

    def metadata(self) -> dict[str, str]:
        pairs = (item.split(" ") for item in self.headers.get("Upload-Metadata", "").split(","))
        return {key: base64.b64decode(value).decode() for key, value in pairs}

    def do_PATCH(self) -> None:
        fake = self.fake
        fake.requests.append(("PATCH", self.path))
        fake.patches += 1
        upload = fake.uploads[self.path]
        length = int(self.headers["Content-Length"])
        if int(self.headers["Upload-Offset"]) != len(upload["data"]):
            self.body()
            self.answer(409, {"message": "wrong offset"})
            return
        if fake.patches in fake.refusals:
            self.body()
            self.answer(fake.refusals[fake.patches], {"message": "Not UTF-8 text"})
            return
        if fake.patches in fake.cuts:
            upload["data"] += self.rfile.read(fake.cuts[fake.patches])
            self.close_connection = True
            self.connection.shutdown(2)
            return
        piece = self.rfile.read(length)
        fake.checksums.append(self.headers.get("Upload-Checksum", ""))
        algorithm, _, digest = self.headers.get("Upload-Checksum", "").partition(" ")
        if algorithm and base64.b64encode(hashlib.new(algorithm, piece).digest()).decode() != digest:
            self.answer(460, {"message": "checksum mismatch"})
            return
        upload["data"] += piece
        fake.after_piece()
        self.answer(204, Upload_Offset=str(len(upload["data"])))


@pytest.fixture
def tus_fake(monkeypatch, tmp_path):
    fake = TusFake()
    handler = type("BoundHandler", (Handler,), {"fake": fake})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("LONG_TASK_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("LONG_TASK_URL", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("LONG_TASK_TOKEN", "secret-token")
    monkeypatch.delenv("LONG_TASK_STOP_AFTER_PIECES", raising=False)
    yield fake
    server.shutdown()
    server.server_close()


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    waits: list[float] = []
    monkeypatch.setattr(time, "sleep", waits.append)
    return waits


@pytest.fixture
def source(tmp_path) -> Path:
    path = tmp_path / "data.csv"
    path.write_bytes(b"id,name\n" + b"".join(b"%d,name %d\n" % (n, n) for n in range(300)))
    return path


def upload(path: Path, *args: str) -> int:
    return cli.main(["upload", str(path), "--chunk-size", str(PIECE), *args])


def the_operation(fake: TusFake) -> dict:
    (op,) = [op for op in fake.operations.values() if op["state"] not in ("terminated", "registered")]
    return op


def entries(tmp_path) -> dict:
    path = tmp_path / "state" / "uploads.json"
    return json.loads(path.read_text()) if path.exists() else {}


def test_a_file_bigger_than_a_piece_goes_in_pieces(tus_fake, source, tmp_path, capsys):
    assert upload(source, "--strict") == outcome.COMPLETED

    op = the_operation(tus_fake)
    assert op["data"] == source.read_bytes()
    (url,) = {json.loads(r)["upload"] for r in tus_fake.registered}
    assert op["options"] == {"op_type": "Upload", "strict": True, "upload": url}
    assert url.startswith("http://127.0.0.1:") and "/api/uploads/" in url
    assert tus_fake.patches == -(-source.stat().st_size // PIECE)
    assert set(tus_fake.checksums) == {""}, "no checksum unless asked for"
    assert entries(tmp_path) == {}, "the state file forgets an upload once its operation started"
    assert f"operation {op['op_id']} started (queued)" in capsys.readouterr().out


def test_checksum_sends_each_piece_with_the_best_algorithm_offered(tus_fake, source):
    assert upload(source, "--checksum") == outcome.COMPLETED
    assert the_operation(tus_fake)["data"] == source.read_bytes()
    assert len(tus_fake.checksums) > 1 and all(c.startswith("sha1 ") for c in tus_fake.checksums)


def test_a_file_of_one_piece_or_less_goes_in_one_request(tus_fake, tmp_path):
    small = tmp_path / "small.csv"
    small.write_bytes(b"id\n" + b"1\n" * (PIECE // 2 - 2))

    assert upload(small) == outcome.COMPLETED
    assert the_operation(tus_fake)["data"] == b"(in one request)"
    assert tus_fake.asked("PATCH") == [] and tus_fake.asked("OPTIONS") == []


def test_ctrl_c_after_a_piece_then_the_same_command_continues_from_the_servers_offset(
    tus_fake, source, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("LONG_TASK_STOP_AFTER_PIECES", "2")
    assert upload(source) == outcome.INTERRUPTED
    err = capsys.readouterr().err
    (op_id,) = tus_fake.operations
    assert f"upload interrupted at 2.0 kB of {source.stat().st_size / 1000:.1f} kB" in err
    assert f"continue: long-task upload {source} --resume --chunk-size {PIECE}" in err
    assert f"long-task terminate {op_id}" in err
    (url,) = tus_fake.uploads
    assert len(tus_fake.uploads[url]["data"]) == 2 * PIECE
    assert len(entries(tmp_path)) == 1

    monkeypatch.delenv("LONG_TASK_STOP_AFTER_PIECES")
    patches_before = tus_fake.patches
    assert upload(source, "--resume") == outcome.COMPLETED

    op = the_operation(tus_fake)
    assert op["op_id"] == op_id, "the operation registered by the first run is the one started"
    assert op["data"] == source.read_bytes()
    assert tus_fake.patches - patches_before == -(-(source.stat().st_size - 2 * PIECE) // PIECE)
    assert "continuing the upload at 2.0 kB" in capsys.readouterr().out
    assert entries(tmp_path) == {}


def test_a_connection_cut_mid_piece_is_retried_from_the_servers_offset(tus_fake, source, sleeps, capsys):
    tus_fake.cuts = {2: 300, 3: 0, 4: 0}

    assert upload(source) == outcome.COMPLETED

    assert the_operation(tus_fake)["data"] == source.read_bytes()
    # After the first cut the server has 300 bytes more: the waits start again from the first;
    # then they double while no byte gets through.
    assert sleeps == [0.5, 0.5, 1.0]
    assert len(tus_fake.asked("HEAD")) == 3
    assert tus_fake.patches == 3 + -(-source.stat().st_size // PIECE)
    assert "trying again in 0.5s" in capsys.readouterr().out


def test_a_link_that_stays_down_gives_up_and_keeps_the_upload_for_the_next_run(
    tus_fake, source, sleeps, tmp_path, capsys
):
    tus_fake.cuts = {n: 0 for n in range(2, 20)}

    assert upload(source) == outcome.USAGE
    assert sleeps == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 16.0]
    err = capsys.readouterr().err
    assert f"sent 1.0 kB of {source.stat().st_size / 1000:.1f} kB; operation" in err
    assert f"continue: long-task upload {source} --resume" in err
    assert len(entries(tmp_path)) == 1 and len(tus_fake.uploads) == 1

    tus_fake.cuts = {}
    assert upload(source) == outcome.COMPLETED
    assert the_operation(tus_fake)["data"] == source.read_bytes()


def test_a_start_refused_while_the_server_finishes_the_upload_is_tried_again(tus_fake, source, sleeps):
    tus_fake.unfinished_starts = 2

    assert upload(source) == outcome.COMPLETED
    assert the_operation(tus_fake)["data"] == source.read_bytes()
    assert sleeps == [0.5, 1.0]
    assert tus_fake.asked("POST").count("/upload/") == 3


def test_the_same_command_without_resume_continues_too(tus_fake, source, monkeypatch, capsys):
    monkeypatch.setenv("LONG_TASK_STOP_AFTER_PIECES", "1")
    assert upload(source) == outcome.INTERRUPTED
    monkeypatch.delenv("LONG_TASK_STOP_AFTER_PIECES")
    assert upload(source) == outcome.COMPLETED
    assert tus_fake.asked("POST").count("/api/uploads/") == 1
    assert the_operation(tus_fake)["data"] == source.read_bytes()


def test_resume_without_an_unfinished_upload_is_a_usage_error(tus_fake, source, capsys):
    assert upload(source, "--resume") == outcome.USAGE
    assert "no unfinished upload of" in capsys.readouterr().err


def test_a_changed_file_is_another_upload(tus_fake, source, monkeypatch, tmp_path):
    monkeypatch.setenv("LONG_TASK_STOP_AFTER_PIECES", "1")
    assert upload(source) == outcome.INTERRUPTED
    monkeypatch.delenv("LONG_TASK_STOP_AFTER_PIECES")
    source.write_bytes(source.read_bytes() + b"300,name 300\n")

    assert upload(source) == outcome.COMPLETED
    assert the_operation(tus_fake)["data"] == source.read_bytes()
    assert tus_fake.asked("POST").count("/api/uploads/") == 2
    assert [op["state"] for op in tus_fake.operations.values()] == ["registered", "queued"]


def test_an_upload_gone_from_the_server_starts_anew(tus_fake, source, monkeypatch):
    monkeypatch.setenv("LONG_TASK_STOP_AFTER_PIECES", "1")
    assert upload(source) == outcome.INTERRUPTED
    monkeypatch.delenv("LONG_TASK_STOP_AFTER_PIECES")
    tus_fake.uploads.clear()

    assert upload(source) == outcome.COMPLETED
    assert the_operation(tus_fake)["data"] == source.read_bytes()
    states = [op["state"] for op in tus_fake.operations.values()]
    assert states == ["terminated", "queued"], "the operation that waited for the old upload is withdrawn"


def test_a_refused_piece_deletes_the_upload_and_withdraws_the_operation(tus_fake, source, tmp_path, capsys):
    tus_fake.refusals = {2: 400}

    assert upload(source) == outcome.USAGE

    assert tus_fake.uploads == {} and len(tus_fake.asked("DELETE")) == 1
    assert [op["state"] for op in tus_fake.operations.values()] == ["terminated"]
    assert entries(tmp_path) == {}
    assert "Not UTF-8 text (operation" in capsys.readouterr().err


def test_a_file_cut_short_while_it_is_sent_deletes_the_upload_and_says_so(tus_fake, tmp_path, capsys):
    source = tmp_path / "big.csv"  # beyond what the client's reader buffers of it at once
    source.write_bytes(b"id,name\n" + b"".join(b"%d,name %d\n" % (n, n) for n in range(3000)))
    tus_fake.after_piece = lambda: source.write_bytes(source.read_bytes()[: PIECE + PIECE // 2])

    assert upload(source) == outcome.USAGE

    assert tus_fake.uploads == {} and len(tus_fake.asked("DELETE")) == 1
    assert [op["state"] for op in tus_fake.operations.values()] == ["terminated"]
    assert entries(tmp_path) == {}
    err = capsys.readouterr().err
    assert f"cannot read {source}: the file ends at" in err, err


# --- the state file ---------------------------------------------------------------------------


def test_the_state_file_keys_an_upload_by_server_user_path_size_and_time(tmp_path):
    state = UploadState(tmp_path / "state")
    identity = FileIdentity(path="/data/a.csv", size=10, mtime_ns=1)
    key = entry_key(server="http://a", token="t", identity=identity)
    state.put(key, Unfinished(url="http://a/api/uploads/1/", file="/data/a.csv", size=10, op_id=7))

    assert state.get(key).url == "http://a/api/uploads/1/"
    others = [
        entry_key(server="http://b", token="t", identity=identity),
        entry_key(server="http://a", token="u", identity=identity),
        entry_key(server="http://a", token="t", identity=FileIdentity(path="/data/b.csv", size=10, mtime_ns=1)),
        entry_key(server="http://a", token="t", identity=FileIdentity(path="/data/a.csv", size=11, mtime_ns=1)),
        entry_key(server="http://a", token="t", identity=FileIdentity(path="/data/a.csv", size=10, mtime_ns=2)),
    ]
    assert all(state.get(other) is None for other in others)
    assert "t" not in json.loads(state.path.read_text())[key].values()
    assert state.path.stat().st_mode & 0o777 == 0o600

    state.forget(key)
    assert state.get(key) is None


def test_an_unreadable_state_file_is_as_if_empty(tmp_path):
    state = UploadState(tmp_path)
    state.path.write_text("{not json")
    assert state.get("anything") is None
    state.put("k", Unfinished(url="u", file="f", size=1))
    assert state.get("k").url == "u"


@pytest.mark.parametrize(
    ("text", "size"),
    [("50MB", 50_000_000), ("8M", 8_000_000), ("4MiB", 4 * 1024**2), ("1000", 1000), ("2kb", 2000), ("1G", 10**9)],
)
def test_chunk_sizes(text, size):
    assert cli.byte_size(text) == size


@pytest.mark.parametrize("text", ["0", "-1", "5 TB", "MB", "1.5M", "٣M"])
def test_bad_chunk_sizes(text):
    with pytest.raises(Exception, match="not a size"):
        cli.byte_size(text)
