"""The console's own views, beside the admin's list and change pages: the buttons of an
operation's page, the import page and its preview (the live view the pages poll: live.py).

OperationAdmin mounts them (`get_urls`) through `admin_site.admin_view`, which lets only active
staff in, keeps the answers out of caches and checks the CSRF token of every POST; each view
reaches the ModelAdmin it is mounted by as `model_admin` (the pattern of Django's own
AutocompleteJsonView), for its permission hooks, its queryset and its messages. The work itself
goes through the same services and selectors as the API.
"""

from django.contrib import messages
from django.contrib.admin import ModelAdmin
from django.core.exceptions import PermissionDenied
from django.db import DatabaseError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.utils.http import urlencode
from django.views import View
from django.views.decorators.csrf import csrf_exempt, csrf_protect

from long_task_shared import humanize
from operations import params, selectors, services, targets
from operations.admin.formatting import CONTROLS, figures
from operations.errors import BadInput, OperationError
from operations.models import Operation
from operations.state_machine import Actor, allows
from operations.tus.starting import start_files
from operations.uploads import check_upload_size, take_files

State = Operation.State

# The pages poll the live view this often while something moves, and this often otherwise (a
# page never stops following, except an operation's page once nothing can change any more).
POLL_MILLISECONDS = 1000
IDLE_POLL_MILLISECONDS = 5000
# The import page previews the first bytes of the chosen file (console.js sends this many).
PREVIEW_MAX_BYTES = 64 * 1024
# The pieces the import page sends a file in (import_upload.js, over tus): each piece is one
# request, under the body limits of common proxies and hosting platforms (often 100 MB).
UPLOAD_CHUNK_BYTES = 50_000_000


def console_context(model_admin: ModelAdmin, request: HttpRequest) -> dict:
    """What every console page gives its template and console.js: where to poll, how often, and
    what the import page needs."""
    return {
        "live_url": reverse("admin:operations_operation_live"),
        "import_url": reverse("admin:operations_operation_import"),
        "preview_url": reverse("admin:operations_operation_import_preview"),
        "active_states": list(State.active()),
        "final_states": list(State.final()),
        "poll_ms": POLL_MILLISECONDS,
        "idle_poll_ms": IDLE_POLL_MILLISECONDS,
        "preview_bytes": PREVIEW_MAX_BYTES,
        "uploads_url": reverse("resumable-uploads"),
        "upload_chunk_bytes": UPLOAD_CHUNK_BYTES,
        "has_import_permission": model_admin.has_import_permission(request),
    }


def wants_json(request: HttpRequest) -> bool:
    """The page's script (console.js) asks for JSON; a browser's plain form post does not."""
    return "application/json" in request.headers.get("Accept", "")


def operation_id(text: str) -> int | None:
    """A database id written in ASCII digits, or None for anything else (which matches nothing)."""
    try:
        return params.bounded_integer(text, minimum=1, message="not an id")
    except BadInput:
        return None


class ConsoleView(View):
    """A view of the console, mounted as `View.as_view(model_admin=...)`."""

    model_admin: ModelAdmin | None = None


class ScriptEndpoint(ConsoleView):
    """A view that only console.js calls: a wrong method is answered in JSON as well."""

    def http_method_not_allowed(self, request: HttpRequest, *args, **kwargs) -> JsonResponse:
        allowed = [method.upper() for method in self.http_method_names]
        response = JsonResponse({"message": f"{' or '.join(allowed)} only"}, status=405)
        response["Allow"] = ", ".join(allowed)
        return response


class ControlView(ConsoleView):
    """POST: Pause, Resume or Terminate from an operation's page, through the services.
    Terminate asks first (a page that names what it deletes), then forces: a running
    operation stops at its next chunk and everything it wrote is deleted."""

    http_method_names = ["post"]

    def post(self, request: HttpRequest, object_id: str, verb: str) -> HttpResponse:
        if verb not in CONTROLS:
            raise Http404("No such control")
        if not self.model_admin.has_control_permission(request):
            raise PermissionDenied
        op = self.model_admin.get_queryset(request).filter(pk=operation_id(object_id)).first()
        if op is None:
            raise Http404("Operation ID Invalid")
        if verb == "terminate" and request.POST.get("confirmed") != "yes":
            return self.confirm_terminate(request, op)
        self.act(request, op, verb)
        back = reverse("admin:operations_operation_change", args=[op.pk])
        if request.GET.get("_changelist_filters"):
            # Back to the page with the list's filters kept, as the admin's own links do.
            back += "?" + urlencode({"_changelist_filters": request.GET["_changelist_filters"]})
        return HttpResponseRedirect(back)

    def confirm_terminate(self, request: HttpRequest, op: Operation) -> TemplateResponse:
        context = {
            **self.model_admin.admin_site.each_context(request),
            "opts": self.model_admin.opts,
            "op": op,
            "text": figures(op),
            "force": not allows("terminate", op.state),
            "title": f"Terminate {op.op_type} #{op.pk}?",
        }
        return TemplateResponse(request, "admin/operations/operation/terminate_confirm.html", context)

    def act(self, request: HttpRequest, op: Operation, verb: str) -> None:
        """Ask the services, and tell the operator what they did or why they refused."""
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
            self.model_admin.message_user(request, f"Refused: {error.message}{hint}.", messages.ERROR)
        except DatabaseError as error:
            message = f"Refused: database error, nothing changed ({error})."
            self.model_admin.message_user(request, message, messages.ERROR)
        else:
            # The message says what the operation is now: tagged with that state, so that the
            # page (console.js) takes it away once the operation has moved on.
            tag = f"lt-while-{op.state}"
            self.model_admin.message_user(request, control_message(verb, op), messages.SUCCESS, extra_tags=tag)


def control_message(verb: str, op: Operation) -> str:
    if op.state == State.PAUSING:
        return f"Pause requested: #{op.pk} is pausing; the worker stops at its next chunk."
    if op.state == State.TERMINATING:
        return f"Terminate requested: #{op.pk} is terminating; the worker deletes what it wrote."
    if verb == "resume":
        return f"Resumed: #{op.pk} is {op.state}; a worker continues from its checkpoint."
    return f"#{op.pk} is {op.state}."


@method_decorator(csrf_exempt, name="dispatch")  # checked on `post` instead, after the size
class ImportView(ConsoleView):
    """The "Import CSV" page: a file and the options; the upload streams through the same
    handler as the API's (FILE_UPLOAD_HANDLERS), and the same services register and start
    the operation, so the 400 and 413 messages are the API's. import_upload.js sends the file
    first, resumable, to /api/uploads/ (tus), then posts the form with `upload=<its URL>` and
    asks for JSON; without the script it is a plain form with the file.

    The CSRF check is Django's `csrf_protect`, on `post` rather than before the view as
    admin_view would place it: an upload over the limit by its Content-Length is refused before
    its body is read, so it has no form fields, its token included, and the operator must still
    be told why (413), not "CSRF verification failed". That refusal registers and stores nothing.
    """

    http_method_names = ["get", "post"]

    def dispatch(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not self.model_admin.has_import_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            error = read_files(request)
            if error is not None:
                return self.answer(request, error=error)
        return super().dispatch(request, *args, **kwargs)

    def get(self, request: HttpRequest) -> HttpResponse:
        return self.answer(request)

    @method_decorator(csrf_protect)
    def post(self, request: HttpRequest) -> HttpResponse:
        actor = Actor.for_user(request.user)
        data = import_options(request.POST)
        try:
            op = services.operation_register(op_type="Upload", actor=actor, data=data)
        except OperationError as error:
            return self.answer(request, error=error)
        try:
            # The file in the form, or `upload=<URL>` of the file import_upload.js sent in pieces.
            with start_files(request, request.POST) as files:
                op, _ = services.operation_start(op_id=op.pk, actor=actor, data=data, files=files)
        except OperationError as error:
            # Withdraw the operation registered for this import, as the command-line client
            # does: it never had input, so it terminates at once with nothing to roll back.
            services.operation_terminate(op_id=op.pk, actor=actor)
            return self.answer(request, error=error)
        what = "Dry run" if data.get("dry_run") else "Import"
        started = f"{what} #{op.pk} started: {op.file_name or 'the file'} ({humanize.size(op.file_size)})."
        self.model_admin.message_user(request, started, messages.SUCCESS)
        url = reverse("admin:operations_operation_change", args=[op.pk])
        if wants_json(request):
            return JsonResponse({"op_id": op.pk, "state": op.state, "redirect": url}, status=202)
        return HttpResponseRedirect(url)

    def answer(self, request: HttpRequest, *, error: OperationError | None = None) -> HttpResponse:
        """The page, with the error if there is one; to the script, the error in JSON."""
        status = error.status_code if error else 200
        if error and wants_json(request):
            return JsonResponse({"message": error.message}, status=status)
        context = {
            **self.model_admin.admin_site.each_context(request),
            **console_context(self.model_admin, request),
            "opts": self.model_admin.opts,
            "title": "Import CSV",
            "error": error.message if error else "",
            "strict": bool(request.POST.get("strict")),
            "targets": targets.names(),
            "target": request.POST.get("target", ""),
        }
        return TemplateResponse(request, "admin/operations/operation/import.html", context, status=status)


def import_options(form) -> dict:
    """The Upload's options from the import form: `strict`, the `target` chosen (none: plain
    rows), and `dry_run` for "Check the whole file"."""
    data = {"strict": "true" if form.get("strict") else "false"}
    if form.get("target"):
        data["target"] = form["target"]
    if form.get("dry_run") == "1" or "check" in form:
        data["dry_run"] = "true"
    return data


class ImportCheckedView(ConsoleView):
    """POST, from a completed dry run's page: import the file it checked (the services hand
    the stored file to a new operation), then show that operation's page."""

    http_method_names = ["post"]

    def post(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if not (self.model_admin.has_import_permission(request) and self.model_admin.has_control_permission(request)):
            raise PermissionDenied
        checked = self.model_admin.get_queryset(request).filter(pk=operation_id(object_id)).first()
        if checked is None:
            raise Http404("Operation ID Invalid")
        try:
            op = services.operation_import(op_id=checked.pk, actor=Actor.for_user(request.user))
        except OperationError as error:
            self.model_admin.message_user(request, f"Refused: {error.message}.", messages.ERROR)
            return HttpResponseRedirect(reverse("admin:operations_operation_change", args=[checked.pk]))
        started = f"Import #{op.pk} started from the file dry run #{checked.pk} checked."
        self.model_admin.message_user(request, started, messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:operations_operation_change", args=[op.pk]))


def read_files(request: HttpRequest, **terms) -> OperationError | None:
    """Parse the body of a view that takes files (an operator's, let in by admin_view), within
    `terms` (see `uploads.take_files`); the refusal of its upload, if any."""
    take_files(request, **terms)
    try:
        request.FILES  # noqa: B018 (parses the body: the upload handler marks what it refused)
        check_upload_size(request)
    except OperationError as error:
        return error
    return None


@method_decorator(csrf_exempt, name="dispatch")  # checked on `post` instead, once the body is read
class PreviewView(ScriptEndpoint):
    """POST the first bytes of a file (`file`, and `complete=1` when that is all of it): its
    header and first rows with the verdict an import would give each. A dry run: nothing
    is registered, stored or written; the file is read into memory, and no further than
    PREVIEW_MAX_BYTES (413 past it).

    The CSRF check is on `post`, as on ImportView: Django's CSRF middleware would read the body
    (its form field) before the view could say that it takes a file, and how much."""

    http_method_names = ["post"]

    def dispatch(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not self.model_admin.has_import_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            too_large = f"Send up to {PREVIEW_MAX_BYTES} bytes in 'file'"
            error = read_files(request, limit=PREVIEW_MAX_BYTES, too_large=too_large, store=False)
            if error is not None:
                return JsonResponse({"message": error.message}, status=error.status_code)
        return super().dispatch(request, *args, **kwargs)

    @method_decorator(csrf_protect)
    def post(self, request: HttpRequest) -> JsonResponse:
        upload = request.FILES.get("file")
        if upload is None:
            return JsonResponse({"message": f"Send up to {PREVIEW_MAX_BYTES} bytes in 'file'"}, status=400)
        if getattr(upload, "text_problem", ""):
            # Found by the upload handler, which then keeps none of the bytes.
            return JsonResponse({"message": upload.text_problem}, status=400)
        complete = request.POST.get("complete") == "1"
        options = {"target": request.POST["target"]} if request.POST.get("target") else {}
        try:
            preview = selectors.input_preview(op_type="Upload", data=upload.read(), complete=complete, options=options)
        except OperationError as error:
            return JsonResponse({"message": error.message}, status=error.status_code)
        return JsonResponse(preview)
