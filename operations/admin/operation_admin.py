"""The ModelAdmin of operations: the live list and an operation's view-only page, and the
bulk actions (Pause, Resume, Terminate), all through the same services and selectors as the API.

An operation's page is view-only: a change form saves the whole row, which would write back
the state and checkpoint it had loaded over the ones a worker wrote since. Operators act
through the buttons and the actions, which lock and validate like the API does.

Permissions go through the ModelAdmin's hooks and the selectors' visibility rule
(`Operation.objects.visible_to`): viewing needs the view permission, acting the control
permission (`has_control_permission`: `change_operation` for one's own operations,
`control_any_operation` for everyone's, see operations/access.py), importing the add
permission; the services then refuse an operation the user may not act on, as the API does.
"""

from collections.abc import Callable

from django.contrib import admin, messages
from django.contrib.admin.utils import flatten_fieldsets
from django.db import DatabaseError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import path
from django.utils.html import format_html

from operations import access, selectors, services
from operations.admin import console, live, page_fields
from operations.admin.filters import CreatedFilter
from operations.admin.formatting import (
    allowed_controls,
    download_refusal,
    event_row,
    figures,
    moment,
    record_figures,
    verdict_rows,
)
from operations.admin.live import ROW_ERRORS_SHOWN
from operations.admin.page_fields import FIELDSETS, PageFields
from operations.errors import OperationError
from operations.models import Operation
from operations.state_machine import Actor

__all__ = ["ROW_ERRORS_SHOWN", "OperationAdmin"]


def page_title(op: Operation) -> str:
    return f"{op.op_type} #{op.pk}" + (f" \u00b7 {op.file_name}" if op.file_name else "")


# --- the model admin -------------------------------------------------------------------------


class OperationAdmin(PageFields, admin.ModelAdmin):
    # What tells operations apart (file, type and owner; age and how long it ran; a failure's
    # reason under its state) and how it goes, stacked in few columns so that the list is not cut
    # on a laptop's screen beside the menus; the other times are on an operation's page.
    list_display = ["id", "file_column", "state_badge", "progress", "speed_and_eta", "created_age"]
    list_filter = ["state", "op_type", ("created_at", CreatedFilter)]
    search_fields = ["id__exact", "owner__username", "file_name"]
    list_select_related = ["owner"]
    actions = ["pause", "resume", "terminate_force"]
    change_list_template = "admin/operations/operation/change_list.html"
    change_form_template = "admin/operations/operation/change_form.html"
    fieldsets = FIELDSETS
    # Everything: the state machine and the worker own state, lease, checkpoint and counters.
    readonly_fields = flatten_fieldsets(fieldsets)

    # --- permissions: watch and act, never edit by hand ------------------------------------

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # The API's rule (operations.access): being staff shows only one's own operations.
        return Operation.objects.visible_to(request.user).select_related("owner")

    def get_object(self, request: HttpRequest, object_id: str, from_field=None) -> Operation | None:
        # The row errors' count read with the counters, so that the page's two numbers agree.
        try:
            op = selectors.with_row_error_count(self.get_queryset(request)).get(pk=int(object_id))
        except (Operation.DoesNotExist, ValueError, OverflowError):
            return None
        # The page links the file only for whom the API's download serves it (download_refusal).
        op.viewer = request.user
        return op

    def has_add_permission(self, request: HttpRequest) -> bool:
        # No add form: operations are registered through the services (the import page, the API),
        # which record the first event.
        return False

    def has_view_permission(self, request: HttpRequest, obj: Operation | None = None) -> bool:
        return super().has_view_permission(request, obj) or access.controls_all(request.user)

    def has_control_permission(self, request: HttpRequest) -> bool:
        """The actions: for one's own operations with `change_operation`, for everyone's with
        `control_any_operation`; the services refuse each operation the user may not act on."""
        return request.user.has_perm("operations.change_operation") or access.controls_all(request.user)

    def has_import_permission(self, request: HttpRequest) -> bool:
        """Importing creates an operation: the model's add permission."""
        return super().has_add_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Operation | None = None) -> bool:
        # Without an object this gates acting (actions, buttons); with one, the change form.
        return obj is None and super().has_change_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Operation | None = None) -> bool:
        # Deleting would bypass terminate, which removes the rows in chunks and the stored file.
        return False

    # --- figures of the list and the page (each element names its operation and field, which
    # the poller updates) ---------------------------------------------------------------------

    @staticmethod
    def _live(op: Operation, field: str, text: str) -> str:
        return page_fields.live(op, field, text)

    @admin.display(description="state", ordering="state")
    def state_badge(self, op: Operation) -> str:
        """The state, and under it why a failed one failed (live: it appears when it fails)."""
        html = (
            '<span class="lt-state" data-op="{}" data-field="state" data-state="{}">{}</span>'
            '<small class="lt-reason" data-op="{}" data-field="reason">{}</small>'
        )
        return format_html(html, op.pk, op.state, op.state, op.pk, figures(op)["reason"])

    @admin.display(description="file", ordering="file_name")
    def file_column(self, op: Operation) -> str:
        """The file's name (cut to the column, whole in its title) over the type and the owner."""
        html = '<span class="lt-file" title="{}">{}</span><small class="lt-sub">{} &middot; {}</small>'
        owner = op.owner.get_username() if op.owner else "anonymous"
        return format_html(html, op.file_name, op.file_name or "-", op.op_type, owner)

    @admin.display(description="created", ordering="created_at")
    def created_age(self, op: Operation) -> str:
        """How long ago it was created (the time itself in the title), over how long it ran."""
        html = (
            '<span data-op="{}" data-field="age" title="{}">{}</span>'
            '<small class="lt-sub">ran <span data-op="{}" data-field="duration">{}</span></small>'
        )
        text = figures(op)
        return format_html(html, op.pk, moment(op.created_at), text["age"], op.pk, text["duration"])

    @admin.display(description="progress")
    def progress(self, op: Operation) -> str:
        text = figures(op)
        percent = selectors.percent_done(op)
        # A bar only where it means progress: none (hidden, and never indeterminate) without a
        # percentage, e.g. registered or terminated.
        bar = format_html(
            '<progress data-op="{}" data-field="bar" max="100" value="{}"{}></progress>',
            op.pk,
            0 if percent is None else percent,
            " hidden" if percent is None else "",
        )
        return format_html(
            '<span class="lt-progress">{} {} <small>{}</small></span>',
            bar,
            self._live(op, "percent", text["percent"]),
            self._live(op, "counts", text["counts"]),
        )

    @admin.display(description="rows/s")
    def speed_and_eta(self, op: Operation) -> str:
        """The rate, over the time left at that rate."""
        text = figures(op)
        html = '<span data-op="{}" data-field="rate_number">{}</span><small class="lt-sub">ETA {}</small>'
        return format_html(html, op.pk, text["rate_number"], self._live(op, "eta", text["eta"]))

    # --- pages -----------------------------------------------------------------------------

    def get_urls(self):
        """The console's views (operations/admin/console.py) before the admin's own pages."""

        def mount(route: str, view: type[console.ConsoleView], name: str):
            return path(route, self.admin_site.admin_view(view.as_view(model_admin=self)), name=name)

        return [
            mount("import/", console.ImportView, "operations_operation_import"),
            mount("import/preview/", console.PreviewView, "operations_operation_import_preview"),
            mount("live/", live.LiveView, "operations_operation_live"),
            mount("<path:object_id>/control/<str:verb>/", console.ControlView, "operations_operation_control"),
            mount("<path:object_id>/import/", console.ImportCheckedView, "operations_operation_import_checked"),
            *super().get_urls(),
        ]

    def get_changelist(self, request: HttpRequest, **kwargs):
        # The live view asks for the list's filters, search and ordering, not for its page.
        if getattr(request, "new_rows_only", False):
            return live.NewRowsChangeList
        return super().get_changelist(request, **kwargs)

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        counts, latest = live.counts_and_latest(request.user)
        context = {
            **console.console_context(self, request),
            "state_counts": list(counts.items()),
            # The newest operation when the page loaded: the live view sends what came after.
            "latest_id": latest,
            # What the page is, not the admin's "Select operation to change".
            "title": "Operations",
            **(extra_context or {}),
        }
        return super().changelist_view(request, extra_context=context)

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None):
        op = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if op is not None and self.has_view_permission(request, op):
            events = list(op.events.all())
            verdicts = selectors.operation_status(op).get("dry_run")
            context.update(
                console.console_context(self, request),
                # What the page is ("Upload #8 · people.csv"), not "View operation"; without
                # the state, which the live badge shows (str(op) would go stale).
                title=page_title(op),
                subtitle=None,
                op=op,
                text=figures(op),
                record=record_figures(op, events),
                events=[event_row(event) for event in events],
                row_errors=list(op.row_errors.order_by("line_number")[:ROW_ERRORS_SHOWN]),
                row_errors_shown=ROW_ERRORS_SHOWN,
                may_download=access.can_download(request.user, op),
                no_download=download_refusal(request.user, op),
                percent=selectors.percent_done(op),
                controls=[(verb, ok) for verb, ok in allowed_controls(op).items() if verb != "import"],
                import_refusal=selectors.import_refusal(op),
                verdicts=verdicts,
                verdict_rows=verdict_rows(verdicts),
                can_act=self.has_control_permission(request),
            )
        return super().change_view(request, object_id, form_url, extra_context=context)

    # --- actions ---------------------------------------------------------------------------

    @admin.action(description="Pause", permissions=["control"])
    def pause(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._apply(request, queryset, "Paused", services.operation_pause)

    @admin.action(description="Resume (paused or failed)", permissions=["control"])
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
