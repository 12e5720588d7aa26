"""Receiving uploads: stream to the file store, hash, check the size and that it is text, in one
pass (I7).

Django hands each chunk of the request body to this handler as it arrives, so a file of any
size costs one chunk of memory. The handler names the file (`upload_name`); where it goes is the
store's business (`storage.upload_target`): on local disk a temporary file next to the media
root, which storing renames; on S3 a multipart upload into the object of that name, one part in
memory, aborted if the upload is refused or cut off.

Django's upload handlers serve every view, and a view's forms (the admin's login, through the
CSRF check that reads `request.POST`) parse a multipart body before the view runs. So file
parts are refused unless the view that takes them said so for this request (`take_files`,
before anything reads the body), and even then only from an authenticated caller, within the
endpoint's own limit and the caller's quotas (`quotas`): a file part refused is not read, and
nothing of it reaches the disk or the bucket.
"""

import hashlib
import io
import uuid

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.core.signals import got_request_exception
from django.http import QueryDict
from django.utils.datastructures import MultiValueDict

from operations import quotas, storage
from operations.csv_reader import TextCheck
from operations.errors import BadInput, OperationError, TooLarge

# What the view that takes the request's files allows (`take_files`); absent: no file parts.
TAKES_FILES_ATTRIBUTE = "long_task_takes_files"
# The refusal of a request's upload (an OperationError), raised by `check_upload_size`.
REFUSAL_ATTRIBUTE = "long_task_upload_refusal"
# The uploads a request started, so that a request that fails half-way aborts them.
UPLOADS_ATTRIBUTE = "long_task_uploads"
# The caller's slot among its uploads in flight, held while the body streams in.
SLOT_ATTRIBUTE = "long_task_upload_slot"
# Room for the other form fields and the multipart framing around the file.
MULTIPART_SLACK_BYTES = 1024**2

NO_FILE_HERE = (
    "This endpoint takes no file: send a file to /upload/ or /api/operations/{id}/start/ "
    "(multipart/form-data, field 'file')"
)


class FileTerms:
    """What a view lets the handler read of a request's file parts: up to `limit` bytes each
    (`too_large`: the 413's message over it), into the file store (`store`) or, for a file
    that is only looked at, into memory."""

    def __init__(self, *, limit: int, too_large: str, store: bool):
        self.limit, self.too_large, self.store = limit, too_large, store


def take_files(request, *, limit: int | None = None, too_large: str = "", store: bool = True) -> None:
    """Let the upload handler read this request's file parts: called by a view that takes files
    before anything reads the body. Default: an upload to import, within
    LONG_TASK_MAX_UPLOAD_BYTES and the caller's quotas."""
    if limit is None:
        limit = settings.LONG_TASK_MAX_UPLOAD_BYTES
        too_large = f"The file is larger than the upload limit of {limit} bytes"
    terms = FileTerms(limit=limit, too_large=too_large or f"The file is larger than {limit} bytes", store=store)
    setattr(request, TAKES_FILES_ATTRIBUTE, terms)


def upload_name() -> str:
    """The stored name of an upload on a store that writes it in place (S3). On local disk the
    operation that keeps the upload names it (`storage.store_upload`)."""
    return f"uploads/{uuid.uuid4().hex}.csv"


def upload_refusal(request) -> OperationError | None:
    """The refusal of this request's upload, if it had one."""
    return getattr(request, REFUSAL_ATTRIBUTE, None)


def check_upload_size(request) -> None:
    """Raise the refusal of this request's upload, if it had one: a 413 over the limit or the
    stored-bytes quota, a 429 past the uploads in flight, the 400 of a file sent to an endpoint
    that takes none."""
    refusal = upload_refusal(request)
    if refusal is not None:
        raise refusal


def _refuse(request, error: OperationError) -> None:
    if getattr(request, REFUSAL_ATTRIBUTE, None) is None:
        setattr(request, REFUSAL_ATTRIBUTE, error)


def _authenticated(request) -> bool:
    user = getattr(request, "user", None)
    return bool(settings.LONG_TASK_ALLOW_ANONYMOUS or (user is not None and user.is_authenticated))


def release_slot(request) -> None:
    slot = request.__dict__.pop(SLOT_ATTRIBUTE, None)
    if slot is not None:
        slot.release()


def abort_unfinished_uploads(request, **_) -> None:
    """Abort the uploads of `request` that did not finish (its body was cut off, or could not
    be parsed): on S3 that drops the parts already sent. Finished ones are the request's files,
    which Django closes when the response is done."""
    if request is None:
        return
    release_slot(request)
    for upload in getattr(request, UPLOADS_ATTRIBUTE, ()):
        if not upload.finished:
            upload.close()


got_request_exception.connect(abort_unfinished_uploads, dispatch_uid="long_task.abort_unfinished_uploads")


class MemoryUpload(UploadedFile):
    """A file that is only looked at (the console's preview): in memory, within the small limit
    of the view that takes it; never stored."""

    finished = False

    def __init__(self, file_name, content_type, charset, content_type_extra):
        super().__init__(io.BytesIO(), file_name, content_type, 0, charset, content_type_extra)

    def write(self, data: bytes) -> None:
        self.file.write(data)

    def finish(self, size: int) -> None:
        self.file.seek(0)
        self.size = size
        self.finished = True

    def discard(self) -> None:
        self.file.seek(0)
        self.file.truncate(0)


class CheckedUploadHandler(FileUploadHandler):
    # The request body is parsed, hashed, checked and written this much at a time. Django's
    # multipart parser holds a few copies of a chunk at once (read, boundary search, leftover),
    # so the chunk size counts several times in a web process's peak memory; a chunk whose
    # copies stay in the CPU's caches also parses faster than a larger one.
    chunk_size = 256 * 1024

    terms: FileTerms | None = None
    limit = 0
    too_large = ""

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        """Decide, before a byte of the body is read, whether its files may come in, and up to
        what size (the endpoint's limit, and what is left of the caller's stored-bytes quota).
        A refusal here reads nothing: the request has no fields either."""
        self.terms = getattr(self.request, TAKES_FILES_ATTRIBUTE, None)
        if self.terms is None or not _authenticated(self.request):
            self.terms = None  # file parts are refused as they come (`new_file`)
            return None
        self.limit, self.too_large = self.terms.limit, self.terms.too_large
        try:
            if self.terms.store:
                self._within_quotas()
        except OperationError as error:
            _refuse(self.request, error)
        else:
            if not content_length or content_length <= self.limit + MULTIPART_SLACK_BYTES:
                return None
            _refuse(self.request, TooLarge(self.too_large))
        release_slot(self.request)
        return QueryDict(encoding=encoding), MultiValueDict()

    def _within_quotas(self) -> None:
        """Take one of the caller's uploads in flight (429 if none is left), and bound the file
        by what is left of its stored-bytes quota."""
        owner = quotas.owner_of(self.request.user)
        self.request.__dict__[SLOT_ATTRIBUTE] = quotas.take_upload_slot(owner)
        left = quotas.stored_bytes_left(owner)
        if left is not None and left < self.limit:
            self.limit, self.too_large = left, quotas.stored_bytes_message(owner)

    def new_file(self, *args, **kwargs) -> None:
        if self.terms is None:
            # Refused before a byte of it is read or stored (and the rest of the body with it).
            _refuse(self.request, BadInput(NO_FILE_HERE))
            raise StopUpload(connection_reset=True)
        super().new_file(*args, **kwargs)
        self.sha256 = hashlib.sha256()
        self.text_check = TextCheck()
        self.received = 0
        if not self.terms.store:
            self.file = MemoryUpload(self.file_name, self.content_type, self.charset, self.content_type_extra)
            return
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
        if self.received > self.limit:
            _refuse(self.request, TooLarge(self.too_large))
            # The parser closes (aborts) the file; the rest of the body is not read.
            raise StopUpload(connection_reset=True)
        slot = getattr(self.request, SLOT_ATTRIBUTE, None)
        if slot is not None:
            slot.keep()
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

    def upload_complete(self) -> None:
        """The body is read: the upload is no longer in flight."""
        if self.request is not None:
            release_slot(self.request)
