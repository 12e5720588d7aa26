"""The console's import form uploads with tus-js-client (resumable, in pieces) in headless
Chromium: a page reload mid-upload continues the same upload, and Cancel deletes it. The upload
is held mid-way by Playwright's request routing (a piece's PATCH kept waiting, never sent), so
nothing depends on speed. Fixtures and helpers: tests/processes/test_browser.py."""

# ruff: noqa: F811 (the fixtures imported from test_browser.py are the tests' parameters)
import hashlib
import re

from operations.models import Operation, UploadedRow
from operations.tus.models import ResumableUpload
from tests.processes.test_browser import (  # noqa: F401 (fixtures)
    admin_login,
    browser,
    expect,
    operator,
    page,
    pytestmark,
    screenshot,
    server,
)
from tests.support import csv_bytes, wait_for

S = Operation.State
PIECE = 20_000
UPLOADS = re.compile(r"/api/uploads/")


class PieceHold:
    """Routes the page's tus requests: lets the first `pieces` PATCHes through and holds the
    next one (never sent on) until the page goes away or cancels it."""

    def __init__(self, page, pieces: int):
        self.page, self.pieces = page, pieces
        self.held = []
        page.route(UPLOADS, self.route)

    def route(self, route) -> None:
        if route.request.method == "PATCH":
            if self.pieces == 0:
                self.held.append(route)
                return
            self.pieces -= 1
        route.continue_()

    def wait_held(self, offset: int) -> None:
        """Until the piece at `offset` is asked for (and so the one before it answered)."""
        self.page.wait_for_event(
            "request", lambda r: r.method == "PATCH" and r.headers.get("upload-offset") == str(offset)
        )

    def release(self) -> None:
        """No more holding (the held piece itself is never sent on)."""
        self.page.unroute(UPLOADS, self.route)


def record_uploads(page) -> list[tuple[str, str | None]]:
    """The tus requests the page makes from now on: (method, Upload-Offset)."""
    asked: list[tuple[str, str | None]] = []
    page.on("request", lambda r: UPLOADS.search(r.url) and asked.append((r.method, r.headers.get("upload-offset"))))
    return asked


def open_import_form(page, operator, chunk_bytes: int) -> None:
    admin_login(page, operator, "/admin/operations/operation/import/")
    # Small pieces for a small file (the console's own are 50 MB).
    page.evaluate(f"document.getElementById('lt-import').setAttribute('data-chunk-bytes', '{chunk_bytes}')")


def test_a_page_reload_mid_upload_continues_the_same_upload(page, operator, workers, tmp_path):
    workers.start()
    content = csv_bytes(3_000)
    path = tmp_path / "people.csv"
    path.write_bytes(content)
    assert len(content) > 4 * PIECE
    open_import_form(page, operator, PIECE)
    hold = PieceHold(page, pieces=2)

    page.set_input_files("#id_file", str(path))
    page.click("#lt-import-submit")
    hold.wait_held(2 * PIECE)
    upload = ResumableUpload.objects.get()
    assert upload.offset == 2 * PIECE
    expect(page.locator("#lt-upload-text")).to_contain_text(
        f"{2 * PIECE / 1000:.1f} kB of {len(content) / 1000:.1f} kB"
    )
    screenshot(page, tmp_path, "1-held-after-two-pieces")

    page.reload()  # while the third piece is held: the page that sent it is gone
    hold.release()
    expect(page.locator("#lt-unfinished")).to_contain_text("Unfinished upload of people.csv")
    assert ResumableUpload.objects.get().offset == 2 * PIECE
    screenshot(page, tmp_path, "2-reloaded")
    asked_after_reload = record_uploads(page)
    page.evaluate(f"document.getElementById('lt-import').setAttribute('data-chunk-bytes', '{PIECE}')")
    page.set_input_files("#id_file", str(path))
    page.click("#lt-import-submit")
    page.wait_for_url(re.compile(r"/admin/operations/operation/\d+/change/$"))
    screenshot(page, tmp_path, "3-started")

    assert ("POST", None) not in asked_after_reload, "the same upload goes on: none created after the reload"
    offsets = [int(offset) for method, offset in asked_after_reload if method == "PATCH"]
    assert offsets[0] == 2 * PIECE and offsets == sorted(offsets)
    op = Operation.objects.get()
    wait_for(lambda: Operation.objects.get().state == S.COMPLETED, timeout=120, what="the import completed")
    op.refresh_from_db()
    assert (op.file_size, op.file_sha256) == (len(content), hashlib.sha256(content).hexdigest())
    assert UploadedRow.objects.filter(operation=op).count() == 3_000
    assert not ResumableUpload.objects.exists(), "the upload became the operation's file"
    expect(page.locator(".lt-run [data-field=state]")).to_have_attribute("data-state", "completed")
    screenshot(page, tmp_path, "4-completed")


def test_cancel_deletes_the_upload(page, operator, tmp_path):
    content = csv_bytes(3_000)
    path = tmp_path / "people.csv"
    path.write_bytes(content)
    open_import_form(page, operator, PIECE)
    hold = PieceHold(page, pieces=1)
    page.set_input_files("#id_file", str(path))
    page.click("#lt-import-submit")
    hold.wait_held(PIECE)
    assert ResumableUpload.objects.get().offset == PIECE

    page.click("#lt-upload-cancel")
    expect(page.locator("#lt-import-error")).to_have_text("Upload cancelled: nothing of it is kept.")
    screenshot(page, tmp_path, "cancelled")
    assert not ResumableUpload.objects.exists()
    assert not Operation.objects.exists()
    expect(page.locator("#lt-unfinished")).to_be_hidden()
