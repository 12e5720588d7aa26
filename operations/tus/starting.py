"""A finished resumable upload as the file of a start or a resume (`upload=<id or URL>` in
place of `file`), for the API and the console alike: no HTTP framework here, so that the
console (which a worker's system checks import) does not pull in the API's."""

import contextlib
from collections.abc import Mapping

from operations.errors import BadInput, NotFound
from operations.tus import services as tus
from operations.tus.models import ResumableUpload


class PiecedFile:
    """A finished resumable upload, as the file of a start or a resume (what the Upload type
    reads of a request's file). Its stored file is handed over (`keep_stored`), not copied."""

    text_problem = ""

    def __init__(self, upload: ResumableUpload):
        self.upload = upload
        self.name, self.size, self.sha256 = upload.file_name, upload.length, upload.sha256
        self.kept = False

    def keep_stored(self) -> str:
        name = tus.take_over(self.upload)
        self.kept = True
        return name


@contextlib.contextmanager
def start_files(request, data: Mapping):
    """The files of a start or resume: the request's, or `{"file": <the upload>}` for
    `upload=<id or URL>` (404 for none of the caller's, 409 for an unfinished one). An upload
    only compared (a resume, whose file is already stored) is deleted once the request has
    succeeded."""
    reference = data.get("upload")
    if reference in (None, ""):
        yield request.FILES
        return
    if request.FILES.get("file") is not None:
        raise BadInput("Send the file or upload=, not both")
    try:
        upload = tus.upload_take(upload_id=tus.upload_id_of(reference), user=request.user)
    except NotFound:
        raise NotFound("No such upload of yours: upload must name one of your finished uploads") from None
    piece = PiecedFile(upload)
    yield {"file": piece}
    if not piece.kept:
        tus.upload_drop(upload)
