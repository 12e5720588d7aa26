"""The admin as the operator console (SPEC §10): live list and detail pages, an import form,
Pause / Resume / Terminate on an operation's page, and the bulk actions, all through the same
services and selectors as the API.

An operation's page is view-only: a change form saves the whole row, which would write back
the state and checkpoint it had loaded over the ones a worker wrote since. Operators act
through the buttons and the actions, which lock and validate like the API does.

Permissions go through the ModelAdmin's hooks and the selectors' visibility rule
(`Operation.objects.visible_to`): viewing needs the view permission, acting the control
permission (`has_control_permission`: `change_operation` for one's own operations,
`control_any_operation` for everyone's, see operations/access.py), importing the add
permission; the services then refuse an operation the user may not act on, as the API does.

The pages poll `live/` (a small JSON view, staff only) about once a second while an operation
on them is active; `static/operations/console.js` applies what it returns. Every figure is
formatted here, once (`figures`), and the script only copies text: one format everywhere.
"""

from collections.abc import Callable, Iterable

from django.contrib import admin, messages
from django.contrib.admin.utils import flatten_fieldsets
from django.core.exceptions import PermissionDenied
from django.db import DatabaseError
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import urlencode
from django.views.decorators.csrf import csrf_exempt, csrf_protect

from long_task_shared import humanize
from operations import access, selectors, services
from operations.errors import OperationError
from operations.models import Operation, OperationEvent, RowError
from operations.state_machine import Actor, allows
from operations.uploads import check_upload_size

State = Operation.State

ROW_ERRORS_SHOWN = 100
COLUMNS_SHOWN = 50
# The live view answers for at most this many operations (a page of the list is 100).
LIVE_MAX_IDS = 200
POLL_MILLISECONDS = 1000
# The import page previews the first bytes of the chosen file (console.js sends this many).
PREVIEW_MAX_BYTES = 64 * 1024
# The buttons of an operation's page: verb -> the transition that decides whether it is offered.
CONTROLS = {"pause": "pause", "resume": "resume", "terminate": "force_terminate"}


admin.site.site_header = "long_task operator console"
admin.site.site_title = "long_task"
admin.site.index_title = "Operations and users"


# --- figures for people: one format, server-rendered and polled alike ------------------------


def moment(at) -> str:
    """A time to the second, in the server's time zone."""
    return "-" if at is None else timezone.localtime(at).strftime("%Y-%m-%d %H:%M:%S")


def figures(op: Operation) -> dict[str, str]:
    """Every figure of an operation as text, in the one human format (long_task_client/humanize)."""
    percent = selectors.percent_done(op)
    rate = selectors.rows_per_second(op)
    imported, failed = humanize.count(selectors.lines_imported(op)), humanize.count(op.lines_failed)
    counts = f"{imported} imported, {failed} failed"
    if op.total_lines is not None:
        counts += f" of {humanize.count(op.total_lines)}"
    return {
        "state": op.state,
        "percent": "" if percent is None else f"{percent:.1f}%",
        "imported": imported,
        "failed": failed,
        "finished": humanize.count(op.lines_finished),
        "total": humanize.count(op.total_lines),
        "counts": counts,
        "rate": "-" if rate is None else f"{humanize.count(rate)} rows/s",
        "rate_number": humanize.count(rate),  # the list's column, headed rows/s
        "eta": humanize.duration(selectors.eta_seconds(op)),
        "started": moment(op.started_at),
        "finished_at": moment(op.finished_at),
        "updated": moment(op.updated_at),
    }


def record_figures(op: Operation, events: Iterable[OperationEvent]) -> dict[str, str]:
    """The run as a whole: duration, time worked, average rate."""
    record = selectors.operation_run_record(op, events)
    average = record.average_rate
    return {
        "duration": humanize.duration(record.duration_seconds),
        "working": humanize.duration(record.working_seconds),
        "average": "-" if average is None else f"{humanize.count(average)} rows/s",
    }


def event_row(event: OperationEvent) -> dict[str, str]:
    return {
        "at": moment(event.at),
        "actor": event.actor,
        "from_state": event.from_state,
        "to_state": event.to_state,
        "detail": event.detail,
    }


def allowed_controls(op: Operation) -> dict[str, bool]:
    """Which buttons the state machine's table allows now (the services decide again on click)."""
    return {verb: allows(transition, op.state) for verb, transition in CONTROLS.items()}


def live_entry(op: Operation) -> dict:
    """What the pages poll for one operation: the status object, its figures as text, and
    whether it is still active and which controls apply."""
    return {
        **selectors.operation_status(op),
        "text": figures(op),
        "active": op.state in State.active(),
        "allowed": allowed_controls(op),
    }


# --- inlines -------------------------------------------------------------------------------


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


class FirstRowErrorsFormSet(BaseInlineFormSet):
    def get_queryset(self) -> QuerySet:
        # Sliced here rather than in the inline's get_queryset, which the formset filters later;
        # and kept, since each form looks its row up in it (a new slice would be a query a row).
        if not hasattr(self, "_first_rows"):
            self._first_rows = super().get_queryset()[:ROW_ERRORS_SHOWN]
        return self._first_rows


class RowErrorInline(ReadOnlyInline):
    model = RowError
    formset = FirstRowErrorsFormSet
    fields = readonly_fields = ["line_number", "reason", "raw"]
    verbose_name_plural = f"row errors (the first {ROW_ERRORS_SHOWN}, as loaded)"


# --- the model admin -------------------------------------------------------------------------


@admin.register(Operation)
class OperationAdmin(admin.ModelAdmin):
    # Narrow enough for a 1280-pixel screen beside the filters; times are on an operation's page.
    list_display = ["id", "type_name", "state_badge", "owner", "progress", "speed_number", "eta"]
    list_filter = ["state", "op_type"]
    search_fields = ["id__exact", "owner__username", "file_name"]
    list_select_related = ["owner"]
    actions = ["pause", "resume", "terminate_force"]
    inlines = [RowErrorInline]
    change_list_template = "admin/operations/operation/change_list.html"
    change_form_template = "admin/operations/operation/change_form.html"
    # The state and the counters are in the live panel above these (change_form.html); what is
    # here either stays put or is live too, so that the page never shows two different numbers.
    fieldsets = [
        (None, {"fields": ["op_type", "owner", "options", "error"]}),
        ("Progress", {"fields": ["progress", "speed", "eta", "row_error_count"]}),
        ("Input", {"fields": ["input_file", "file_name", "file_size", "file_sha256", "header"]}),
        ("Times", {"fields": ["created", "started", "finished", "updated"]}),
        (
            "Checkpoint and lease (as loaded)",
            {
                "classes": ["collapse"],
                "fields": [
                    "lines_finished",
                    "lines_failed",
                    "total_lines",
                    "position",
                    "checkpoint",
                    "rollback_position",
                    "lease_owner",
                    "lease_expires_at",
                ],
            },
        ),
    ]
    # Everything: the state machine and the worker own state, lease, checkpoint and counters.
    readonly_fields = flatten_fieldsets(fieldsets)

    # --- permissions: watch and act, never edit by hand ------------------------------------

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # The API's rule (operations.access): being staff shows only one's own operations.
        return Operation.objects.visible_to(request.user).select_related("owner")

    def get_object(self, request: HttpRequest, object_id: str, from_field=None) -> Operation | None:
        # The row errors' count read with the counters, so that the page's two numbers agree.
        try:
            return selectors.with_row_error_count(self.get_queryset(request)).get(pk=int(object_id))
        except (Operation.DoesNotExist, ValueError, OverflowError):
            return None

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
        return format_html('<span data-op="{}" data-field="{}">{}</span>', op.pk, field, text)

    @admin.display(description="state", ordering="state")
    def state_badge(self, op: Operation) -> str:
        html = '<span class="lt-state" data-op="{}" data-field="state" data-state="{}">{}</span>'
        return format_html(html, op.pk, op.state, op.state)

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
    def speed(self, op: Operation) -> str:
        return self._live(op, "rate", figures(op)["rate"])

    @admin.display(description="rows/s")
    def speed_number(self, op: Operation) -> str:
        return self._live(op, "rate_number", figures(op)["rate_number"])

    @admin.display(description="type", ordering="op_type")
    def type_name(self, op: Operation) -> str:
        return op.op_type

    @admin.display(description="ETA")
    def eta(self, op: Operation) -> str:
        return self._live(op, "eta", figures(op)["eta"])

    @admin.display(description="updated", ordering="updated_at")
    def updated(self, op: Operation) -> str:
        return self._live(op, "updated", moment(op.updated_at))

    @admin.display(description="created")
    def created(self, op: Operation) -> str:
        return moment(op.created_at)

    @admin.display(description="started")
    def started(self, op: Operation) -> str:
        return self._live(op, "started", moment(op.started_at))

    @admin.display(description="finished")
    def finished(self, op: Operation) -> str:
        return self._live(op, "finished_at", moment(op.finished_at))

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
        live_count = self._live(op, "failed", humanize.count(count))
        return format_html('{} (all of them: <a href="{}">CSV</a>)', live_count, url)

    @admin.display(description="file")
    def input_file(self, op: Operation) -> str:
        """The stored file through the API's owner-checked download, never a media URL."""
        refusal = selectors.download_refusal(op)
        if refusal:
            return refusal
        url = reverse("operation-download", args=[op.pk])
        return format_html('<a href="{}">{}</a>', url, op.file_name or "download")

    # --- pages -----------------------------------------------------------------------------

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("import/", wrap(self.import_view), name="operations_operation_import"),
            path("import/preview/", wrap(self.preview_view), name="operations_operation_import_preview"),
            path("live/", wrap(self.live_view), name="operations_operation_live"),
            path("<path:object_id>/control/<str:verb>/", wrap(self.control_view), name="operations_operation_control"),
            *super().get_urls(),
        ]

    def _console_context(self, request: HttpRequest) -> dict:
        return {
            "live_url": reverse("admin:operations_operation_live"),
            "import_url": reverse("admin:operations_operation_import"),
            "preview_url": reverse("admin:operations_operation_import_preview"),
            "active_states": list(State.active()),
            "poll_ms": POLL_MILLISECONDS,
            "preview_bytes": PREVIEW_MAX_BYTES,
            "has_import_permission": self.has_import_permission(request),
        }

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None):
        counts = selectors.operation_counts(user=request.user)
        context = {**self._console_context(request), "state_counts": list(counts.items()), **(extra_context or {})}
        return super().changelist_view(request, extra_context=context)

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None):
        op = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if op is not None and self.has_view_permission(request, op):
            events = list(op.events.all())
            context.update(
                self._console_context(request),
                # Without the state, which the live badge shows (str(op) would go stale).
                subtitle=f"{op.op_type} #{op.pk}",
                op=op,
                text=figures(op),
                record=record_figures(op, events),
                events=[event_row(event) for event in events],
                percent=selectors.percent_done(op),
                controls=list(allowed_controls(op).items()),
                can_act=self.has_control_permission(request),
            )
        return super().change_view(request, object_id, form_url, extra_context=context)

    @staticmethod
    def _ids(request: HttpRequest) -> list[int]:
        ids = []
        for part in request.GET.get("ids", "").split(",")[:LIVE_MAX_IDS]:
            if part.strip().isdigit() and int(part) < 2**63:
                ids.append(int(part))
        return ids

    def live_view(self, request: HttpRequest) -> JsonResponse:
        """GET `?ids=1,2,3[&detail=1]`: the live figures of these operations (those the user may
        see), the counts by state, and with `detail` the run record and events of the one."""
        if request.method != "GET":
            return JsonResponse({"message": "GET only"}, status=405)
        if not self.has_view_permission(request):
            return JsonResponse({"message": "You do not have permission to view operations."}, status=403)
        ops = list(self.get_queryset(request).filter(pk__in=self._ids(request)))
        body = {
            "operations": [live_entry(op) for op in ops],
            "active": any(op.state in State.active() for op in ops),
            "counts": selectors.operation_counts(user=request.user),
        }
        if request.GET.get("detail") and len(ops) == 1:
            events = list(ops[0].events.all())
            body["record"] = record_figures(ops[0], events)
            body["events"] = [event_row(event) for event in events]
        return JsonResponse(body)

    def control_view(self, request: HttpRequest, object_id: str, verb: str) -> HttpResponse:
        """POST: Pause, Resume or Terminate from an operation's page, through the services.
        Terminate asks first (a page that names what it deletes), then forces: a running
        operation stops at its next chunk and everything it wrote is deleted."""
        if request.method != "POST":
            return HttpResponse(status=405)
        if verb not in CONTROLS:
            raise Http404("No such control")
        if not self.has_control_permission(request):
            raise PermissionDenied
        op = self.get_queryset(request).filter(pk=object_id if object_id.isdigit() else None).first()
        if op is None:
            raise Http404("Operation ID Invalid")
        back = reverse("admin:operations_operation_change", args=[op.pk])
        if request.GET.get("_changelist_filters"):
            # Back to the page with the list's filters kept, as the admin's own links do.
            back += "?" + urlencode({"_changelist_filters": request.GET["_changelist_filters"]})
        if verb == "terminate" and request.POST.get("confirmed") != "yes":
            context = {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "op": op,
                "text": figures(op),
                "force": not allows("terminate", op.state),
                "title": f"Terminate {op.op_type} #{op.pk}?",
            }
            return TemplateResponse(request, "admin/operations/operation/terminate_confirm.html", context)
        actor = Actor.for_user(request.user)
        try:
            if verb == "pause":
                op = services.operation_pause(op_id=op.pk, actor=actor)
            elif verb == "resume":
                op = services.operation_resume(op_id=op.pk, actor=actor)
            else:
                op = services.operation_terminate(op_id=op.pk, actor=actor, force=True)
        except OperationError as error:
            hint = f" ({error.hint})" if error.hint else ""
            self.message_user(request, f"Refused: {error.message}{hint}.", messages.ERROR)
        except DatabaseError as error:
            self.message_user(request, f"Refused: database error, nothing changed ({error}).", messages.ERROR)
        else:
            self.message_user(request, _control_message(verb, op), messages.SUCCESS)
        return HttpResponseRedirect(back)

    @csrf_exempt
    def import_view(self, request: HttpRequest) -> HttpResponse:
        """The "Import CSV" page: a file and the options; the upload streams through the same
        handler as the API's (FILE_UPLOAD_HANDLERS), and the same services register and start
        the operation, so the 400 and 413 messages are the API's.

        CSRF is checked after the size: an upload refused before its body is read has no form
        fields, its token included, and must still be told why (413), not "CSRF failed"."""
        if not self.has_import_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            request.POST  # noqa: B018 (reads the body through the upload handler)
            try:
                check_upload_size(request)
            except OperationError as error:
                return self._import_answer(request, error=error)
        return csrf_protect(self._import)(request)

    def preview_view(self, request: HttpRequest) -> JsonResponse:
        """POST the first bytes of a file (`file`, and `complete=1` when that is all of it): its
        header and first rows with the verdict an import would give each. A dry run: nothing
        is registered, stored or written."""
        if not self.has_import_permission(request):
            raise PermissionDenied
        if request.method != "POST":
            return JsonResponse({"message": "POST only"}, status=405)
        upload = request.FILES.get("file")
        if upload is None or upload.size > PREVIEW_MAX_BYTES:
            return JsonResponse({"message": f"Send up to {PREVIEW_MAX_BYTES} bytes in 'file'"}, status=400)
        if getattr(upload, "text_problem", ""):
            # Found by the upload handler, which then keeps none of the bytes.
            return JsonResponse({"message": upload.text_problem}, status=400)
        try:
            preview = selectors.input_preview(
                op_type="Upload", data=upload.read(), complete=request.POST.get("complete") == "1"
            )
        except OperationError as error:
            return JsonResponse({"message": error.message}, status=error.status_code)
        return JsonResponse(preview)

    def _import(self, request: HttpRequest) -> HttpResponse:
        if request.method != "POST":
            return self._import_answer(request)
        actor = Actor.for_user(request.user)
        data = {"strict": "true" if request.POST.get("strict") else "false"}
        try:
            op = services.operation_register(op_type="Upload", actor=actor, data=data)
        except OperationError as error:
            return self._import_answer(request, error=error)
        try:
            op, _ = services.operation_start(op_id=op.pk, actor=actor, data=data, files=request.FILES)
        except OperationError as error:
            # Withdraw the operation registered for this import, as the command-line client
            # does: it never had input, so it terminates at once with nothing to roll back.
            services.operation_terminate(op_id=op.pk, actor=actor)
            return self._import_answer(request, error=error)
        name = op.file_name or "the file"
        self.message_user(
            request, f"Import #{op.pk} started: {name} ({humanize.size(op.file_size)}).", messages.SUCCESS
        )
        url = reverse("admin:operations_operation_change", args=[op.pk])
        if _wants_json(request):
            return JsonResponse({"op_id": op.pk, "state": op.state, "redirect": url}, status=202)
        return HttpResponseRedirect(url)

    def _import_answer(self, request: HttpRequest, *, error: OperationError | None = None) -> HttpResponse:
        status = error.status_code if error else 200
        if error and _wants_json(request):
            return JsonResponse({"message": error.message}, status=status)
        context = {
            **self.admin_site.each_context(request),
            **self._console_context(request),
            "opts": self.opts,
            "title": "Import CSV",
            "error": error.message if error else "",
            "strict": bool(request.POST.get("strict")),
        }
        return TemplateResponse(request, "admin/operations/operation/import.html", context, status=status)

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


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _control_message(verb: str, op: Operation) -> str:
    if op.state == State.PAUSING:
        return f"Pause requested: #{op.pk} is pausing; the worker stops at its next chunk."
    if op.state == State.TERMINATING:
        return f"Terminate requested: #{op.pk} is terminating; the worker deletes what it wrote."
    if verb == "resume":
        return f"Resumed: #{op.pk} is {op.state}; a worker continues from its checkpoint."
    return f"#{op.pk} is {op.state}."
