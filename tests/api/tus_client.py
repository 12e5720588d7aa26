"""A minimal tus 1.0 client over Django's test client, for the tests of /api/uploads/: each
request spelled out, so that a test can send exactly the piece, offset or header it wants."""

import base64
import hashlib
from pathlib import Path

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from operations.tus.models import ResumableUpload
from tests.support import csv_bytes

TUS = {"Tus-Resumable": "1.0.0"}
PIECE = "application/offset+octet-stream"
MiB = 1024 * 1024


def metadata(**pairs: str) -> str:
    return ",".join(f"{key} {base64.b64encode(value.encode()).decode()}" for key, value in pairs.items())


def create(client: APIClient, length: int, *, name: str = "data.csv", headers: dict | None = None):
    extra = {**TUS, "Upload-Length": str(length), "Upload-Metadata": metadata(filename=name), **(headers or {})}
    return client.generic("POST", "/api/uploads/", headers=extra)


def created(client: APIClient, length: int, **kwargs) -> str:
    """The path of a new upload of `length` bytes."""
    response = create(client, length, **kwargs)
    assert response.status_code == 201, response.content
    return response["Location"].split("testserver", 1)[-1]


def head(client: APIClient, url: str, headers: dict | None = None):
    return client.generic("HEAD", url, headers={**TUS, **(headers or {})})


def offset(client: APIClient, url: str) -> int:
    response = head(client, url)
    assert response.status_code == 200, response.status_code
    return int(response["Upload-Offset"])


def patch(client: APIClient, url: str, at: int, piece: bytes, *, checksum: str | None = None, **headers):
    extra = {**TUS, "Upload-Offset": str(at), **headers}
    if checksum is not None:
        extra["Upload-Checksum"] = checksum
    content_type = extra.pop("Content-Type", PIECE)
    return client.generic("PATCH", url, data=piece, content_type=content_type, headers=extra)


def sha1_of(piece: bytes) -> str:
    return "sha1 " + base64.b64encode(hashlib.sha1(piece).digest()).decode()


def send(client: APIClient, url: str, content: bytes, *, piece_bytes: int, start: int = 0, pieces: int | None = None):
    """Send `content` from `start` in pieces of `piece_bytes` (`pieces` of them at most)."""
    sent = 0
    while start < len(content) and (pieces is None or sent < pieces):
        piece = content[start : start + piece_bytes]
        response = patch(client, url, start, piece, checksum=sha1_of(piece))
        assert response.status_code == 204, response.content
        start += len(piece)
        assert int(response["Upload-Offset"]) == start
        sent += 1
    return start


def upload(client: APIClient, content: bytes, *, piece_bytes: int = 64 * 1024, name: str = "data.csv") -> str:
    """A finished upload of `content`: its path."""
    url = created(client, len(content), name=name)
    send(client, url, content, piece_bytes=piece_bytes)
    return url


# --- where the bytes are: local disk, or S3 (the suite's moto server) --------------------------


class LocalStore:
    def read(self, name: str) -> bytes:
        return (Path(settings.MEDIA_ROOT) / name).read_bytes()

    def leftovers(self) -> list[str]:
        root = Path(settings.MEDIA_ROOT) / "uploads"
        return (
            sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file()) if root.exists() else []
        )


class S3Store:
    def __init__(self, bucket):
        self.bucket = bucket

    def read(self, name: str) -> bytes:
        return self.bucket.read(name)

    def leftovers(self) -> list[str]:
        return self.bucket.all_keys() + self.bucket.multipart_uploads()


# The params of a test module's `store` fixture, which returns `store_for(request, settings)`.
STORES = ["local", pytest.param("s3", marks=pytest.mark.s3)]


def store_for(request, settings) -> LocalStore | S3Store:
    if request.param == "local":
        return LocalStore()
    settings.LONG_TASK_S3_PART_BYTES = 5 * MiB  # S3's least: tails and parts in a few MiB
    return S3Store(request.getfixturevalue("s3"))


def big_csv() -> bytes:
    """A CSV of more than two S3 parts of 5 MiB."""
    return csv_bytes(250_000)


def upload_of(url: str) -> ResumableUpload:
    return ResumableUpload.objects.get(pk=url.rstrip("/").rsplit("/", 1)[-1])
