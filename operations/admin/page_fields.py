"""The read-only fields of an operation's page, each in human form (sizes, counts, options,
times), without the model's help texts: the admin shows a model field's help text under it,
which reads as a raw note here. Those that change while a worker runs are live (console.js)."""

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from long_task_shared import humanize
from operations import access
from operations.admin.formatting import NOT_YOURS, download_refusal, figures, moment, options_text
from operations.models import Operation
from operations.state_machine import checkpoint_of

COLUMNS_SHOWN = 50

# The page's fieldsets: the state and the counters are in the live panel above them
# (change_form.html); what is here either stays put or is live too, so that the page never shows
# two different numbers. The times say "at", the counts "rows": "finished" is never both.
FIELDSETS = [
    (None, {"fields": ["op_type", "owner", "options_shown", "error"]}),
    ("Progress", {"fields": ["progress", "speed", "eta", "row_error_count"]}),
    ("Input", {"fields": ["input_file", "name_of_file", "size", "file_sha256", "header"]}),
    ("Times", {"fields": ["created", "started", "finished", "updated"]}),
    (
        "Checkpoint and lease (as loaded)",
        {
            "classes": ["collapse"],
            "fields": ["rows_done", "rows_failed", "rows_total", "where", "rollback", "lease_owner", "lease_until"],
        },
    ),
]


def live(op: Operation, field: str, text: str) -> str:
    """A figure that the poller updates: its element names its operation and field."""
    return format_html('<span data-op="{}" data-field="{}">{}</span>', op.pk, field, text)


class PageFields:
    """The display methods of an operation's page (a mixin of OperationAdmin)."""

    @admin.display(description="options")
    def options_shown(self, op: Operation) -> str:
        return options_text(op.options)

    @admin.display(description="rows/s")
    def speed(self, op: Operation) -> str:
        return live(op, "rate", figures(op)["rate"])

    @admin.display(description="ETA")
    def eta(self, op: Operation) -> str:
        return live(op, "eta", figures(op)["eta"])

    @admin.display(description="created at")
    def created(self, op: Operation) -> str:
        return moment(op.created_at)

    @admin.display(description="started at")
    def started(self, op: Operation) -> str:
        return live(op, "started", moment(op.started_at))

    @admin.display(description="finished at")
    def finished(self, op: Operation) -> str:
        return live(op, "finished_at", moment(op.finished_at))

    @admin.display(description="updated at")
    def updated(self, op: Operation) -> str:
        return live(op, "updated", moment(op.updated_at))

    @admin.display(description="file name")
    def name_of_file(self, op: Operation) -> str:
        return op.file_name or "-"

    @admin.display(description="size")
    def size(self, op: Operation) -> str:
        """`52.1 MB`, the exact number of bytes in its title."""
        if op.file_size is None:
            return "-"
        return format_html(
            '<span title="{} bytes">{}</span>', humanize.count(op.file_size), humanize.size(op.file_size)
        )

    @admin.display(description="header")
    def header(self, op: Operation) -> str:
        """The column names, the first COLUMNS_SHOWN of a wide header."""
        columns = op.columns or []
        shown = ", ".join(columns[:COLUMNS_SHOWN])
        if len(columns) > COLUMNS_SHOWN:
            shown += f", ... ({len(columns):,} columns)"
        return shown or "-"

    @admin.display(description="row errors")
    def row_error_count(self, op: Operation) -> str:
        count = getattr(op, "row_error_count", None)
        if count is None:
            count = op.row_errors.count()
        url = reverse("operation-row-errors", args=[op.pk]) + "?format=csv"
        # Live as `failed`: the counter that this count agrees with.
        return format_html('{} (all of them: <a href="{}">CSV</a>)', live(op, "failed", humanize.count(count)), url)

    @admin.display(description="file")
    def input_file(self, op: Operation) -> str:
        """The stored file through the API's owner-checked download, never a media URL; for
        those who may download it, live (console.js): the link goes once there is no file (a
        terminate deletes it) and the reason why takes its place."""
        if not access.can_download(op.viewer, op):
            return NOT_YOURS
        refusal = download_refusal(op.viewer, op)
        url = reverse("operation-download", args=[op.pk])
        html = (
            '<a href="{}" data-op="{}" data-when="download"{}>{}</a>'
            '<span data-op="{}" data-field="no_download" data-when="no-download"{}>{}</span>'
        )
        link_hidden, refusal_hidden = (" hidden", "") if refusal else ("", " hidden")
        name = op.file_name or "download"
        return format_html(html, url, op.pk, link_hidden, name, op.pk, refusal_hidden, refusal)

    # --- the checkpoint, as loaded ---------------------------------------------------------

    @admin.display(description="rows read")
    def rows_done(self, op: Operation) -> str:
        return humanize.count(op.lines_finished)

    @admin.display(description="rows rejected")
    def rows_failed(self, op: Operation) -> str:
        return humanize.count(op.lines_failed)

    @admin.display(description="rows in all")
    def rows_total(self, op: Operation) -> str:
        return humanize.count(op.total_lines)

    @admin.display(description="checkpoint")
    def where(self, op: Operation) -> str:
        """Where the type stands ("line 7,500"), its position and whatever else it keeps."""
        extra = options_text(op.checkpoint) if op.checkpoint else ""
        text = f"{checkpoint_of(op)} (position {humanize.count(op.position)})"
        return f"{text} · {extra}" if extra else text

    @admin.display(description="rolled back up to")
    def rollback(self, op: Operation) -> str:
        return f"line {humanize.count(op.rollback_position)}" if op.rollback_position else "-"

    @admin.display(description="lease until")
    def lease_until(self, op: Operation) -> str:
        return moment(op.lease_expires_at)
