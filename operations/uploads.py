"""Receiving uploads: stream to disk, hash, check the size and that it is text, in one pass (I7).

Django hands each chunk of the request body to this handler as it arrives, so a file of any
size costs one chunk of memory, and storing it afterwards is a rename within the media root.
"""

import hashlib

from django.conf import settings
from django.core.files.uploadhandler import StopUpload, TemporaryFileUploadHandler
from django.http import QueryDict
from django.utils.datastructures import MultiValueDict

from operations.csv_reader import TextCheck
from operations.errors import BadInput, TooLarge

# Marks a request whose upload went over LONG_TASK_MAX_UPLOAD_BYTES.
TOO_LARGE_ATTRIBUTE = "long_task_upload_too_large"
# Room for the other form fields and the multipart framing around the file.
MULTIPART_SLACK_BYTES = 1024**2


# Marks a request that sent a file to an endpoint that takes none.
FILE_REFUSED_ATTRIBUTE = "long_task_file_refused"


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


class CheckedUploadHandler(TemporaryFileUploadHandler):
    chunk_size = 1024**2

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

    def receive_data_chunk(self, raw_data: bytes, start: int):
        self.received += len(raw_data)
        if self.received > settings.LONG_TASK_MAX_UPLOAD_BYTES:
            setattr(self.request, TOO_LARGE_ATTRIBUTE, True)
            self.upload_interrupted()
            raise StopUpload(connection_reset=False)
        self.sha256.update(raw_data)
        self.text_check.feed(raw_data)
        return super().receive_data_chunk(raw_data, start)

    def file_complete(self, file_size: int):
        self.text_check.feed(b"", final=True)
        uploaded = super().file_complete(file_size)
        uploaded.sha256 = self.sha256.hexdigest()
        uploaded.text_problem = self.text_check.problem
        return uploaded
