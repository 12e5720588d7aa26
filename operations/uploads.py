"""Receiving uploads: stream to the file store, hash, check the size and that it is text, in one
pass (I7).

Django hands each chunk of the request body to this handler as it arrives, so a file of any
size costs one chunk of memory. The handler names the file (`upload_name`); where it goes is the
store's business (`storage.upload_target`): on local disk a temporary file next to the media
root, which storing renames; on S3 a multipart upload into the object of that name, one part in
memory, aborted if the upload is refused or cut off.
"""

import hashlib
import uuid

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.core.signals import got_request_exception
from django.http import QueryDict
from django.utils.datastructures import MultiValueDict

from operations import storage
from operations.csv_reader import TextCheck
from operations.errors import BadInput, TooLarge

# Marks a request whose upload went over LONG_TASK_MAX_UPLOAD_BYTES.
TOO_LARGE_ATTRIBUTE = "long_task_upload_too_large"
# The uploads a request started, so that a request that fails half-way aborts them.
UPLOADS_ATTRIBUTE = "long_task_uploads"
# Room for the other form fields and the multipart framing around the file.
MULTIPART_SLACK_BYTES = 1024**2


# Marks a request that sent a file to an endpoint that takes none.
FILE_REFUSED_ATTRIBUTE = "long_task_file_refused"


def upload_name() -> str:
    """The stored name of an upload on a store that writes it in place (S3). On local disk the
    operation that keeps the upload names it (`storage.store_upload`)."""
    return f"uploads/{uuid.uuid4().hex}.csv"


def check_upload_size(request) -> None:
    """Raise the one 413 of an upload over LONG_TASK_MAX_UPLOAD_BYTES, if this request's was,
    or the 400 of a file sent to an endpoint that takes none."""
    if getattr(request, TOO_LARGE_ATTRIBUTE, False):
        raise TooLarge(f"The file is larger than the upload limit of {settings.LONG_TASK_MAX_UPLOAD_BYTES} bytes")
    if getattr(request, FILE_REFUSED_ATTRIBUTE, False):
        raise BadInput(
            "This endpoint takes no file: send a file to /upload/ or /api/operations/{id}/start/ "
            "(multipart/form-data, field 'file')"
        )


def accepts_files(request) -> bool:
    """Whether the view the request goes to takes file parts: an API view says so with
    `accepts_files`, a viewset with `file_actions`; views that say nothing (the admin's, with
    forms of their own) decide for themselves."""
    match = getattr(request, "resolver_match", None)
    view = getattr(match.func, "cls", None) if match else None
    actions = getattr(match.func, "actions", None) if match else None
    if actions is not None and hasattr(view, "file_actions"):
        return actions.get(request.method.lower()) in view.file_actions
    return getattr(view, "accepts_files", True)


def abort_unfinished_uploads(request, **_) -> None:
    """Abort the uploads of `request` that did not finish (its body was cut off, or could not
    be parsed): on S3 that drops the parts already sent. Finished ones are the request's files,
    which Django closes when the response is done."""
    for upload in getattr(request, UPLOADS_ATTRIBUTE, ()):
        if not upload.finished:
            upload.close()


got_request_exception.connect(abort_unfinished_uploads, dispatch_uid="long_task.abort_unfinished_uploads")


class CheckedUploadHandler(FileUploadHandler):
    # The request body is parsed, hashed, checked and written this much at a time. Django's
    # multipart parser holds a few copies of a chunk at once (read, boundary search, leftover),
    # so the chunk size counts several times in a web process's peak memory; a chunk whose
    # copies stay in the CPU's caches also parses faster than a larger one.
    chunk_size = 256 * 1024

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        if content_length and content_length > settings.LONG_TASK_MAX_UPLOAD_BYTES + MULTIPART_SLACK_BYTES:
            # Refuse before reading a byte of the body.
            setattr(self.request, TOO_LARGE_ATTRIBUTE, True)
            return QueryDict(encoding=encoding), MultiValueDict()
        return None

    def new_file(self, *args, **kwargs) -> None:
        if not accepts_files(self.request):
            # Refused before a byte of it is read or stored (and the rest of the body with it).
            setattr(self.request, FILE_REFUSED_ATTRIBUTE, True)
            raise StopUpload(connection_reset=True)
        super().new_file(*args, **kwargs)
        self.sha256 = hashlib.sha256()
        self.text_check = TextCheck()
        self.received = 0
        # `file`: the name Django's parser closes on StopUpload and SkipFile.
        self.file = storage.upload_target(
            upload_name(),
            file_name=self.file_name,
            content_type=self.content_type,
            charset=self.charset,
            content_type_extra=self.content_type_extra,
        )
        if self.request is not None:
            self.request.__dict__.setdefault(UPLOADS_ATTRIBUTE, []).append(self.file)

    def receive_data_chunk(self, raw_data: bytes, start: int):
        self.received += len(raw_data)
        if self.received > settings.LONG_TASK_MAX_UPLOAD_BYTES:
            setattr(self.request, TOO_LARGE_ATTRIBUTE, True)
            raise StopUpload(connection_reset=False)  # the parser closes (aborts) the file
        self.sha256.update(raw_data)
        if not self.text_check.problem:
            self.text_check.feed(raw_data)
            if self.text_check.problem:
                self.file.discard()  # refused whatever follows: store nothing more of it
        self.file.write(raw_data)

    def file_complete(self, file_size: int):
        self.text_check.feed(b"", final=True)
        if self.text_check.problem:
            self.file.discard()
        self.file.finish(file_size)
        self.file.sha256 = self.sha256.hexdigest()
        self.file.text_problem = self.text_check.problem
        return self.file

    def upload_interrupted(self) -> None:
        if hasattr(self, "file"):
            self.file.close()
