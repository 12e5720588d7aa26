"""A real S3 API for the tests and the bench, without Django: moto's server on a loopback port
(its own process, killed at the end), a bucket per test, the environment that points a web
process or a worker at it, and a TCP proxy that can cut connections (a store that goes away
mid-read)."""

import contextlib
import logging
import os
import select
import socket
import struct
import subprocess
import sys
import threading
import uuid
from pathlib import Path

from testbed.machine import free_port, port_open, wait_for

logger = logging.getLogger(__name__)
REGION = "us-east-1"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


class MotoServer:
    """`moto_server` on 127.0.0.1:<free port>, in memory."""

    def __init__(self, *, log_path: Path):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._log = open(log_path, "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **CREDENTIALS},
        )
        try:
            wait_for(lambda: port_open(self.port) or self.process.poll() is not None, timeout=60, what="moto")
            if self.process.poll() is not None:
                raise RuntimeError(f"moto_server exited with {self.process.returncode}: {log_path.read_text()}")
        except BaseException:
            self.stop()
            raise

    def client(self, endpoint: str | None = None):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=endpoint or self.endpoint,
            region_name=REGION,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    def new_bucket(self, prefix: str = "lt") -> "Bucket":
        name = f"{prefix}-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name)
        return Bucket(self, name)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        self._log.close()


class Bucket:
    """A bucket of the server, and where long_task keeps its files in it (`prefix`)."""

    def __init__(self, server: MotoServer, name: str, prefix: str = "files"):
        self.server = server
        self.name = name
        self.prefix = prefix
        self.client = server.client()

    @property
    def url(self) -> str:
        return f"s3://{self.name}/{self.prefix}"

    def env(self, endpoint: str | None = None) -> dict[str, str]:
        """The environment of a web process or worker that keeps its files here."""
        return {
            "LONG_TASK_STORAGE_URL": self.url,
            "AWS_S3_ENDPOINT_URL": endpoint or self.server.endpoint,
            "AWS_S3_REGION_NAME": REGION,
            **CREDENTIALS,
        }

    def all_keys(self) -> list[str]:
        """Every object in the bucket, under the prefix or not."""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", ()))

    def read(self, name: str) -> bytes:
        """The object of a stored file (its name as long_task knows it)."""
        return self.client.get_object(Bucket=self.name, Key=f"{self.prefix}/{name}")["Body"].read()

    def multipart_uploads(self) -> list[str]:
        """The keys of multipart uploads begun and neither completed nor aborted."""
        return [item["Key"] for item in self.client.list_multipart_uploads(Bucket=self.name).get("Uploads", ())]


class CuttingProxy:
    """A TCP proxy on a loopback port in front of `target_port`. `refuse = True` closes every
    new connection at once (the store is away); `cut_after = N` closes the next connection's
    answer after N bytes of it (a connection lost mid-read), once, counted in `cuts`;
    `cut_request_after = N` resets the next connection once N bytes of the request side went
    through (a link lost mid-upload); `cut_all()` resets the connections open now.
    `request_bytes` counts what went through on the request side, all connections together."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.refuse = False
        self.cut_after: int | None = None
        self.cut_request_after: int | None = None
        self.cuts = 0
        self.request_bytes = 0
        self.connections = 0
        self._open: set[socket.socket] = set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._running = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while self._running:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            if self.refuse:
                client.close()
                continue
            limit, self.cut_after = self.cut_after, None
            request_limit, self.cut_request_after = self.cut_request_after, None
            threading.Thread(target=self._pipe, args=(client, limit, request_limit), daemon=True).start()

    def _pipe(self, client: socket.socket, limit: int | None, request_limit: int | None = None) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
        except OSError as exc:
            # Said in the log a failing test shows: the client sees only a closed connection.
            logger.warning("proxy: could not reach the store: %r", exc)
            client.close()
            return
        sent_back = sent_on = 0
        polite = False
        self._open.add(client)
        try:
            while True:
                readable, _, _ = select.select([client, upstream], [], [], 30)
                if not readable:
                    return
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        # The store ended the connection (moto does after each answer): the end
                        # goes on after the answer. A reset would make the client's kernel drop
                        # an answer the client has not read yet (on a loaded machine, a 200
                        # seen as a connection closed before any answer).
                        polite = sock is upstream
                        return
                    if sock is upstream:
                        if limit is not None and sent_back + len(data) >= limit:
                            # The answer stops short: what was sent arrives, then the end.
                            client.sendall(data[: max(0, limit - sent_back)])
                            polite = True
                            self.cuts += 1
                            return
                        sent_back += len(data)
                        client.sendall(data)
                    elif request_limit is not None and sent_on + len(data) >= request_limit:
                        upstream.sendall(data[: max(0, request_limit - sent_on)])
                        self.request_bytes += max(0, request_limit - sent_on)
                        self.cuts += 1
                        _reset(upstream)
                        return
                    else:
                        sent_on += len(data)
                        upstream.sendall(data)
                        self.request_bytes += len(data)
        except OSError:
            return
        finally:
            self._open.discard(client)
            if polite:
                with contextlib.suppress(OSError):
                    client.shutdown(socket.SHUT_WR)
                    select.select([client], [], [], 5)  # until the client has read it and closed
                client.close()
            else:
                _reset(client)
            upstream.close()

    def cut_all(self) -> int:
        """Reset every connection open through the proxy now; how many there were."""
        cut = list(self._open)
        for client in cut:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
        return len(cut)

    def close(self) -> None:
        self._running = False
        self._listener.close()
        self.cut_all()


def _reset(sock: socket.socket) -> None:
    """Close with a reset, not politely: what a dropped connection looks like to the client."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class SilentStore:
    """A listener on a loopback port that accepts connections and never answers (nor reads):
    an object store that hangs. `endpoint` is what a web process is pointed at."""

    def __init__(self):
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.connections = 0
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            self._held.append(client)

    def close(self) -> None:
        self._listener.close()
        for client in self._held:
            _reset(client)
