"""The live view that the console's pages poll (static/operations/console.js), one request a
page and a constant number of queries, however many operations, events or row errors there are.

GET `?ids=1,2,3`: the live figures of the operations the page shows (those the user may see) and
the counts by state. Then, for a list page, `&since=<id>&filters=<its query string>`: the rows
of the operations that its filters, search and ordering would show and that are new since it
loaded (an id above `since` that is not among `ids`), rendered as the list renders its rows. For
an operation's page, `&detail=1&errors_after=<line>&errors_shown=<n>`: the record of the run, its
events, the row errors recorded after the last one the page shows, and a dry run's totals by reason.
"""

import copy

from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import SuspiciousOperation
from django.db.models import Count, Max
from django.http import HttpRequest, JsonResponse, QueryDict
from django.template.loader import render_to_string
from django.urls import resolve, reverse

from operations import params, selectors
from operations.admin.console import ScriptEndpoint, operation_id
from operations.admin.formatting import download_refusal, event_row, live_entry, record_figures, verdict_rows
from operations.errors import BadInput
from operations.models import Operation

State = Operation.State

# The live view answers for at most this many operations (a page of the list is 100).
LIVE_MAX_IDS = 200
# New rows sent to a list in one answer (the newest; the next poll brings the rest).
NEW_ROWS_MAX = 50
# The first row errors of a run that an operation's page lists (all of them: the CSV).
ROW_ERRORS_SHOWN = 100


class NewRowsChangeList(ChangeList):
    """The list page's filters, search and ordering (its ChangeList), without counting or reading
    its page of results: the live view reads only the rows that are new."""

    def get_results(self, request: HttpRequest) -> None:
        self.result_count = self.full_result_count = 0
        self.result_list = []
        self.show_full_result_count = self.show_admin_actions = False
        self.can_show_all = self.multi_page = False
        self.paginator = None


def counts_and_latest(user) -> tuple[dict[str, int], int]:
    """How many of the operations `user` may see are in each state, and the newest id (one query)."""
    rows = Operation.objects.visible_to(user).order_by().values_list("state").annotate(n=Count("pk"), last=Max("pk"))
    counts = {state: n for state, n, _ in rows}
    latest = max((last for _, _, last in rows), default=0)
    return {state: counts.get(state, 0) for state in State.values}, latest


def whole_number(text: str | None) -> int:
    """A count or id that the page sends (0 when absent or not a number)."""
    try:
        return params.bounded_integer(text or "0", minimum=0, message="not a number")
    except BadInput:
        return 0


class LiveView(ScriptEndpoint):
    """The JSON that console.js polls (see the module's docstring)."""

    http_method_names = ["get"]

    def get(self, request: HttpRequest) -> JsonResponse:
        if not self.model_admin.has_view_permission(request):
            return JsonResponse({"message": "You do not have permission to view operations."}, status=403)
        ids = [operation_id(part) for part in request.GET.get("ids", "").split(",")[:LIVE_MAX_IDS]]
        ids = [pk for pk in ids if pk]
        detail = bool(request.GET.get("detail")) and len(ids) == 1
        queryset = self.model_admin.get_queryset(request).filter(pk__in=ids)
        if detail:
            queryset = selectors.with_row_error_count(queryset)
        ops = list(queryset)
        selectors.attach_upload_progress(ops)
        counts, latest = counts_and_latest(request.user)
        is_list = "since" in request.GET
        # The page polls fast while its operations move; a list, while any does (one that its
        # filter hides now may be one that it shows next).
        active = any(op.state in State.active() for op in ops)
        if is_list:
            active = active or any(counts[state] for state in State.active())
        body = {
            "operations": [self.entry(request, op) for op in ops],
            "active": active,
            "counts": counts,
            "latest": latest,
        }
        if detail and ops:
            body.update(detail_of(ops[0], request.GET, dry_run=body["operations"][0].get("dry_run")))
        if is_list:
            try:
                body["new_rows"] = self.new_rows(request, ids)
            except (IncorrectLookupParameters, SuspiciousOperation):
                # What the list itself answers with its "?e=1" page, or a 400 for a lookup it
                # does not allow.
                return JsonResponse({"message": "The list has no such filter"}, status=400)
        return JsonResponse(body)

    @staticmethod
    def entry(request: HttpRequest, op: Operation) -> dict:
        """An operation's live figures, and whether this user may download its file now."""
        entry = live_entry(op)
        refusal = download_refusal(request.user, op)
        entry["text"]["no_download"] = refusal
        entry["download"] = not refusal
        return entry

    def new_rows(self, request: HttpRequest, known: list[int]) -> str:
        """The list's rows (HTML) of the operations new since the page loaded, newest first; ""
        when there are none (then nothing is rendered)."""
        page_request = copy.copy(request)
        page_request.GET = QueryDict(request.GET.get("filters", ""))
        # The rows' links keep the list's filters, as the list's own do.
        page_request.resolver_match = resolve(reverse("admin:operations_operation_changelist"))
        page_request.new_rows_only = True  # OperationAdmin.get_changelist: NewRowsChangeList
        changelist = self.model_admin.get_changelist_instance(page_request)
        since = whole_number(request.GET.get("since"))
        new = changelist.queryset.filter(pk__gt=since).exclude(pk__in=known).order_by("-pk")[:NEW_ROWS_MAX]
        changelist.result_list = list(new)
        if not changelist.result_list:
            return ""
        changelist.formset = None
        context = {"cl": changelist, "opts": changelist.opts}
        return render_to_string("admin/operations/operation/live_rows.html", context, page_request)


def detail_of(op: Operation, query: QueryDict, *, dry_run: dict | None) -> dict:
    """An operation's page: the record of its run, its events, and the row errors it has not
    shown yet (from the first again when there are fewer than it shows: a terminate deletes them)."""
    events = list(op.events.all())
    after, shown = whole_number(query.get("errors_after")), whole_number(query.get("errors_shown"))
    reset = op.row_error_count < shown
    if reset:
        after, shown = 0, 0
    rows = []
    if shown < ROW_ERRORS_SHOWN:
        found = op.row_errors.filter(line_number__gt=after).order_by("line_number")[: ROW_ERRORS_SHOWN - shown]
        rows = [{"line": error.line_number, "reason": error.reason, "raw": error.raw} for error in found]
    return {
        "record": record_figures(op, events),
        "events": [event_row(event) for event in events],
        "row_errors": {"reset": reset, "count": op.row_error_count, "rows": rows},
        "verdicts": verdict_rows(dry_run),
    }
