"""The admin (SPEC §10): operations with their progress, events and row errors, and actions that
pause, resume or terminate them through the same services as the API.

An operation's page is view-only: a change form saves the whole row, which would write back
the state and checkpoint it had loaded over the ones a worker wrote since. Operators act
through the actions, which lock and validate like the API does.
"""

from collections.abc import Callable

from django.contrib import admin, messages
from django.contrib.admin.utils import flatten_fieldsets
from django.db import DatabaseError
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from operations import access, selectors, services
from operations.errors import OperationError
from operations.models import Operation, OperationEvent, RowError
from operations.state_machine import Actor

ROW_ERRORS_SHOWN = 100
COLUMNS_SHOWN = 50


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class EventInline(ReadOnlyInline):
    model = OperationEvent
    fields = readonly_fields = ["at", "actor", "from_state", "to_state", "detail"]


class FirstRowErrorsFormSet(BaseInlineFormSet):
    def get_queryset(self) -> QuerySet:
        # Sliced here rather than in the inline's get_queryset, which the formset filters later.
        return super().get_queryset()[:ROW_ERRORS_SHOWN]


class RowErrorInline(ReadOnlyInline):
    model = RowError
    formset = FirstRowErrorsFormSet
    fields = readonly_fields = ["line_number", "reason", "raw"]
    verbose_name_plural = f"row errors (the first {ROW_ERRORS_SHOWN})"


@admin.register(Operation)
class OperationAdmin(admin.ModelAdmin):
    list_display = ["id", "op_type", "state", "owner", "progress", "speed", "created_at", "updated_at"]
    list_filter = ["state", "op_type"]
    search_fields = ["id__exact", "owner__username", "file_name"]
    list_select_related = ["owner"]
    actions = ["pause", "resume", "terminate_force"]
    inlines = [EventInline, RowErrorInline]
    fieldsets = [
        (None, {"fields": ["op_type", "state", "owner", "options", "error"]}),
        (
            "Progress",
            {
                "fields": [
                    "progress",
                    "lines_finished",
                    "lines_failed",
                    "total_lines",
                    "speed",
                    "eta",
                    "row_error_count",
                ]
            },
        ),
        ("Input", {"fields": ["file", "file_name", "file_size", "file_sha256", "header"]}),
        (
            "Checkpoint and lease",
            {"fields": ["position", "checkpoint", "rollback_position", "lease_owner", "lease_expires_at"]},
        ),
        ("Times", {"fields": ["created_at", "started_at", "finished_at", "updated_at"]}),
    ]
    # Everything: the state machine and the worker own state, lease, checkpoint and counters.
    readonly_fields = flatten_fieldsets(fieldsets)

    # --- permissions: watch and act, never edit by hand ------------------------------------

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # The API's rule (operations.access): being staff shows only one's own operations.
        return super().get_queryset(request).visible_to(request.user)

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Operations are registered through the API, which records the first event.
        return False

    def has_view_permission(self, request: HttpRequest, obj: Operation | None = None) -> bool:
        return super().has_view_permission(request, obj) or access.controls_all(request.user)

    def has_control_permission(self, request: HttpRequest) -> bool:
        """The actions: for one's own operations with `change_operation`, for everyone's with
        `control_any_operation`; the services refuse each operation the user may not act on."""
        return request.user.has_perm("operations.change_operation") or access.controls_all(request.user)

    def has_change_permission(self, request: HttpRequest, obj: Operation | None = None) -> bool:
        # Without an object this gates the changelist's actions; with one, the change form.
        return obj is None and super().has_change_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Operation | None = None) -> bool:
        # Deleting would bypass terminate, which removes the rows in chunks and the stored file.
        return False

    # --- figures ---------------------------------------------------------------------------

    @admin.display(description="progress")
    def progress(self, op: Operation) -> str:
        percent = selectors.percent_done(op)
        counts = f"{op.lines_finished:,} finished, {op.lines_failed:,} failed"
        if percent is None:
            return format_html('<progress max="100"></progress> <small>{}</small>', counts)
        return format_html(
            '<progress max="100" value="{}" title="{}%"></progress> {}% <small>{}</small>',
            percent,
            percent,
            percent,
            counts,
        )

    @admin.display(description="rows/s")
    def speed(self, op: Operation) -> str:
        rate = selectors.rows_per_second(op)
        return "-" if rate is None else f"{rate:,.0f}"

    @admin.display(description="ETA")
    def eta(self, op: Operation) -> str:
        seconds = selectors.eta_seconds(op)
        return "-" if seconds is None else f"{seconds:,.0f} s"

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
        url = reverse("operation-row-errors", args=[op.pk])
        return format_html('{} (all of them: <a href="{}">{}</a>)', op.row_errors.count(), url, url)

    # --- actions ---------------------------------------------------------------------------

    @admin.action(description="Pause", permissions=["control"])
    def pause(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._apply(request, queryset, "Paused", services.operation_pause)

    @admin.action(description="Resume", permissions=["control"])
    def resume(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._apply(request, queryset, "Resumed", services.operation_resume)

    @admin.action(description="Terminate (force)", permissions=["control"])
    def terminate_force(self, request: HttpRequest, queryset: QuerySet) -> None:
        def terminate(*, op_id: int, actor: Actor) -> Operation:
            return services.operation_terminate(op_id=op_id, actor=actor, force=True)

        self._apply(request, queryset, "Terminating", terminate)

    def _apply(self, request: HttpRequest, queryset: QuerySet, done_label: str, verb: Callable[..., Operation]) -> None:
        """Call `verb` on each selected operation, each in its own transaction, and report
        every success and refusal; one refusal does not stop the others."""
        actor = Actor.for_user(request.user)
        done, refused = [], []
        for op_id in queryset.order_by("id").values_list("id", flat=True):
            try:
                op = verb(op_id=op_id, actor=actor)
            except OperationError as error:
                refused.append(f"#{op_id}: {error.message}")
            except DatabaseError as error:
                # E.g. a lock wait that timed out: the transition rolled back; say so, not a 500.
                refused.append(f"#{op_id}: database error, nothing changed ({error})")
            else:
                done.append(f"#{op_id} is {op.state}")
        if done:
            self.message_user(request, f"{done_label}: {', '.join(done)}.", messages.SUCCESS)
        if refused:
            self.message_user(request, f"Refused: {'; '.join(refused)}.", messages.ERROR)
