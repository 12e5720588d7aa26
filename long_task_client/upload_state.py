"""The unfinished uploads this user's client knows of, in a small JSON file (as tuspy's URL
storage keeps them): for each, the server's URL of the upload and the operation waiting for it.

An upload is found again by its file as it was: the server and the user (a digest of the token,
never the token), the file's absolute path, its size and its modification time. A file changed
since is another file, and starts a new upload. The file is
`$LONG_TASK_STATE_DIR/uploads.json`, else `$XDG_STATE_HOME/long-task/uploads.json` (by default
`~/.local/state/long-task/uploads.json`); it is rewritten whole (a temporary file renamed), and
readable by its owner only."""

import hashlib
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

STATE_FILE_NAME = "uploads.json"
# Entries older than this are dropped when the file is written: the server deletes an
# unfinished upload long before (a day by default).
FORGET_AFTER_SECONDS = 30 * 24 * 3600


def state_dir() -> Path:
    explicit = os.environ.get("LONG_TASK_STATE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "long-task"


@dataclass(frozen=True)
class FileIdentity:
    """What makes a later run's file the same file: where it is, its size, its last change."""

    path: str
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path, stat: os.stat_result) -> "FileIdentity":
        return cls(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@dataclass
class Unfinished:
    """An upload begun: its URL, and the operation registered for it (None: not yet)."""

    url: str
    file: str
    size: int
    op_id: int | None = None
    options: dict = field(default_factory=dict)
    saved_at: float = field(default_factory=time.time)


def entry_key(*, server: str, token: str | None, identity: FileIdentity) -> str:
    user = hashlib.sha256((token or "").encode()).hexdigest()[:16]
    parts = [server.rstrip("/"), user, identity.path, str(identity.size), str(identity.mtime_ns)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


class UploadState:
    """The state file: `get`, `put` and `forget` an entry by its key."""

    def __init__(self, directory: Path | None = None):
        self.path = (directory or state_dir()) / STATE_FILE_NAME

    def _read(self) -> dict[str, dict]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}  # none yet, or unreadable: as if no upload were unfinished
        return data if isinstance(data, dict) else {}

    def _write(self, entries: dict[str, dict]) -> None:
        oldest = time.time() - FORGET_AFTER_SECONDS
        kept = {key: entry for key, entry in entries.items() if entry.get("saved_at", 0) >= oldest}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".uploads-", suffix=".json")
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                json.dump(kept, handle, indent=1, sort_keys=True)
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> Unfinished | None:
        entry = self._read().get(key)
        try:
            return Unfinished(**entry) if isinstance(entry, dict) else None
        except TypeError:
            return None

    def put(self, key: str, unfinished: Unfinished) -> None:
        entries = self._read()
        unfinished.saved_at = time.time()
        entries[key] = asdict(unfinished)
        self._write(entries)

    def forget(self, key: str) -> None:
        entries = self._read()
        if entries.pop(key, None) is not None:
            self._write(entries)
