"""The tus 1.0 headers: what the server announces, and reading what a client sends.

Every response carries `Tus-Resumable: 1.0.0`; every request but OPTIONS must carry it too
(412 with `Tus-Version` otherwise). Extensions: creation, termination, checksum (sha1, sha256,
md5 of a PATCH body in `Upload-Checksum`), expiration (`Upload-Expires`).
"""

import base64
import binascii
import hashlib
from datetime import datetime

from django.conf import settings
from django.utils.http import http_date

from operations.errors import BadInput, OperationError

VERSION = "1.0.0"
EXTENSIONS = ("creation", "termination", "checksum", "expiration")
CHECKSUM_ALGORITHMS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "md5": hashlib.md5}
PIECE_CONTENT_TYPE = "application/offset+octet-stream"
# Upload-Metadata is kept and given back as it came: bounded like any header we store.
METADATA_LIMIT = 4096
# Every header of the protocol, for browsers (CORS-exposed by proxies that need it).
HEADERS = (
    "Tus-Resumable",
    "Tus-Version",
    "Tus-Extension",
    "Tus-Max-Size",
    "Tus-Checksum-Algorithm",
    "Upload-Offset",
    "Upload-Length",
    "Upload-Metadata",
    "Upload-Expires",
    "Location",
)


class VersionMismatch(OperationError):
    status_code = 412
    default_message = f"This server speaks tus {VERSION}: send the header Tus-Resumable: {VERSION}"


class UnsupportedMediaType(OperationError):
    status_code = 415
    default_message = f"A piece must be sent with Content-Type: {PIECE_CONTENT_TYPE}"


class ChecksumMismatch(OperationError):
    status_code = 460
    default_message = "The piece does not match its Upload-Checksum: nothing of it was kept"


def server_headers() -> dict[str, str]:
    """What OPTIONS says about this server."""
    return {
        "Tus-Resumable": VERSION,
        "Tus-Version": VERSION,
        "Tus-Extension": ",".join(EXTENSIONS),
        "Tus-Max-Size": str(settings.LONG_TASK_MAX_UPLOAD_BYTES),
        "Tus-Checksum-Algorithm": ",".join(CHECKSUM_ALGORITHMS),
    }


def check_version(headers) -> None:
    if headers.get("Tus-Resumable") != VERSION:
        raise VersionMismatch()


def non_negative(headers, name: str) -> int:
    """A header holding a byte count or offset; 400 when missing or not a non-negative integer."""
    value = headers.get(name)
    if value is None:
        raise BadInput(f"The header {name} is required")
    value = value.strip()
    if not value.isdigit() or len(value) > 19:
        raise BadInput(f"{name} must be a non-negative integer, not {value[:40]!r}")
    return int(value)


def metadata(value: str) -> dict[str, bytes]:
    """Upload-Metadata: comma-separated `key base64value` pairs (the value may be left out);
    400 for a malformed one."""
    if len(value) > METADATA_LIMIT:
        raise BadInput(f"Upload-Metadata is longer than {METADATA_LIMIT} characters")
    pairs: dict[str, bytes] = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        key, _, encoded = item.partition(" ")
        if not key or key in pairs:
            raise BadInput(f"Upload-Metadata has an empty or repeated key: {key!r}")
        try:
            pairs[key] = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise BadInput(f"Upload-Metadata: the value of {key!r} is not base64") from None
    return pairs


def file_name(pairs: dict[str, bytes]) -> str:
    """The file's name from the metadata (`filename`, or `name` as some clients send it)."""
    raw = pairs.get("filename", pairs.get("name", b""))
    name = raw.decode("utf-8", errors="replace").replace("\x00", "")
    return name.replace("\\", "/").rsplit("/", 1)[-1][:255]


def checksum(value: str | None):
    """Upload-Checksum `algorithm base64digest`: (a new hash object, the expected digest), or
    None without the header; 400 for an algorithm not offered or a malformed value."""
    if value is None:
        return None
    algorithm, _, encoded = value.strip().partition(" ")
    if algorithm not in CHECKSUM_ALGORITHMS:
        offered = ", ".join(CHECKSUM_ALGORITHMS)
        raise BadInput(f"Upload-Checksum: the algorithm {algorithm[:20]!r} is not offered (offered: {offered})")
    try:
        expected = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise BadInput("Upload-Checksum: the digest is not base64") from None
    return CHECKSUM_ALGORITHMS[algorithm](), expected


def expires(moment: datetime) -> str:
    """Upload-Expires, in HTTP's date format."""
    return http_date(moment.timestamp())
