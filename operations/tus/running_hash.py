"""The SHA-256 of an upload computed as its pieces arrive, kept in this process from one piece
to the next when they come to the same process (as they do to a single web process, or over
one kept-alive connection). A hashlib object can be neither saved in the database nor rebuilt
from a state, so whenever the chain breaks (a piece went to another process, this one
restarted, a piece failed half-way) the upload's hash is computed at the end by reading the
stored file back (`services._finish`): the same answer, at the cost of one more pass (on S3,
one more download). Bounded: the most recent KEPT uploads of the process."""

import hashlib
import threading
from collections import OrderedDict

KEPT = 256

_lock = threading.Lock()
_hashes: "OrderedDict[str, tuple[int, object]]" = OrderedDict()


def take(upload_id, offset: int):
    """The running hash of the first `offset` bytes of the upload (a fresh one at 0), or None
    if this process does not have it. Taken: nobody else feeds it meanwhile."""
    with _lock:
        kept = _hashes.pop(str(upload_id), None)
    if kept is not None and kept[0] == offset:
        return kept[1]
    return hashlib.sha256() if offset == 0 else None


def keep(upload_id, offset: int, running) -> None:
    """Keep the running hash of the first `offset` bytes for the next piece."""
    if running is None:
        return
    with _lock:
        _hashes[str(upload_id)] = (offset, running)
        while len(_hashes) > KEPT:
            _hashes.popitem(last=False)


def forget(upload_id) -> None:
    with _lock:
        _hashes.pop(str(upload_id), None)
