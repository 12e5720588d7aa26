"""The dashboard (SPEC §10): the console's landing page (the admin's index) and the front page
of a logged-in user. What runs now with bars, throughput over the last hour (an SVG chart drawn
here), counts by state, recent failures with their reasons, and the workers: each process, the
operation it holds, its last checkpoint and its lease, stalled leases marked.

The page renders the panel (templates/operations/dashboard_panel.html) through the
`operations_dashboard` tag; `DashboardLiveView` renders the same panel for the page's script
(static/operations/dashboard.js), one request a poll, in the queries of
`operations.dashboard.dashboard_snapshot` (a fixed number).
"""

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.cache import never_cache

from long_task_shared import humanize
from operations import access, selectors
from operations.admin.chart import throughput_svg
from operations.admin.console import IDLE_POLL_MILLISECONDS, POLL_MILLISECONDS
from operations.admin.formatting import age, figures, moment
from operations.dashboard import Dashboard, dashboard_snapshot
from operations.models import Operation, WorkerProcess
from operations.state_machine import checkpoint_of

State = Operation.State
PANEL_TEMPLATE = "operations/dashboard_panel.html"


def dashboard_context(request: HttpRequest) -> dict:
    """Everything the panel shows, as text (the snapshot's queries, nothing more)."""
    user = request.user
    snapshot = dashboard_snapshot(user=user)
    links = user.is_active and user.is_staff
    workers = [worker_row(worker, user, links) for worker in snapshot.workers]
    workers += [unheld_row(op, user, links) for op in snapshot.unheld_stalled]
    current_rate = snapshot.throughput[-1][1] if snapshot.throughput else 0.0
    return {
        "chart": throughput_svg(snapshot.throughput),
        "current_rate": humanize.count(current_rate),
        "rows_last_hour": humanize.count(snapshot.rows_last_hour),
        "counts": [(state, n) for state, n in snapshot.counts.items()],
        "list_url": reverse("admin:operations_operation_changelist") if links else "",
        "running": [operation_row(op, links) for op in snapshot.running],
        "running_more": max(sum(snapshot.counts[s] for s in State.active()) - len(snapshot.running), 0),
        "failures": [operation_row(op, links) for op in snapshot.failures],
        "workers": workers,
        "workers_alive": sum(1 for worker in snapshot.workers if not worker.silent),
        "stalled": sum(1 for row in workers if row["stalled"]),
        "active": is_active(snapshot),
    }


def is_active(snapshot: Dashboard) -> bool:
    """Something moves: the page polls fast."""
    return bool(snapshot.running) or any(worker.operation_id for worker in snapshot.workers)


def operation_row(op: Operation, links: bool) -> dict:
    text = figures(op)
    return {
        "op": op,
        "text": text,
        "percent": selectors.percent_done(op),
        "url": reverse("admin:operations_operation_change", args=[op.pk]) if links else "",
        "updated_age": age(op.updated_at),
    }


def until(at) -> str:
    """A lease's expiry from now: "in 24s", or "expired 12s ago"."""
    if at is None:
        return "-"
    seconds = (at - timezone.now()).total_seconds()
    if seconds >= 0:
        return f"in {humanize.duration(seconds)}"
    return f"expired {humanize.duration(-seconds)} ago"


def held_operation(op: Operation | None, user, links: bool, *, holder: str) -> dict | None:
    """The operation a worker holds, as the workers table shows it (None: it holds nothing)."""
    if op is None:
        return None
    visible = access.can_see(user, op)
    return {
        "op": op if visible else None,
        "url": reverse("admin:operations_operation_change", args=[op.pk]) if links and visible else "",
        "file": op.file_name if visible else "",
        "held": op.lease_owner == holder and op.state in State.worked(),
        "checkpoint": checkpoint_of(op) if visible else "",
        "checkpoint_age": age(op.updated_at),
        "lease": until(op.lease_expires_at),
    }


def worker_row(worker: WorkerProcess, user, links: bool) -> dict:
    holds = held_operation(worker.operation, user, links, holder=worker.worker_id)
    return {
        "worker_id": worker.worker_id,
        "host": worker.host,
        "pid": worker.pid,
        "since": moment(worker.started_at),
        "since_age": age(worker.started_at),
        "last_seen": age(worker.last_seen),
        "silent": worker.silent,
        "holds": holds,
        "stalled": bool(holds and holds["held"] and worker.lease_expired),
    }


def unheld_row(op: Operation, user, links: bool) -> dict:
    """A worked operation whose lease expired and whose worker is not listed (killed, pruned)."""
    return {
        "worker_id": op.lease_owner or "nobody",
        "host": "",
        "pid": "",
        "since": "",
        "since_age": "",
        "last_seen": "not seen",
        "silent": True,
        "holds": held_operation(op, user, links, holder=op.lease_owner),
        "stalled": True,
    }


@method_decorator(never_cache, name="dispatch")
class DashboardLiveView(View):
    """GET: the panel as HTML for dashboard.js, and whether something moves (poll fast)."""

    http_method_names = ["get"]

    def get(self, request: HttpRequest) -> JsonResponse:
        if not request.user.is_authenticated:
            return JsonResponse({"message": "Log in to see the dashboard."}, status=403)
        context = dashboard_context(request)
        html = render_to_string(PANEL_TEMPLATE, context, request)
        return JsonResponse({"html": html, "active": context["active"]})

    def http_method_not_allowed(self, request: HttpRequest, *args, **kwargs) -> JsonResponse:
        response = JsonResponse({"message": "GET only"}, status=405)
        response["Allow"] = "GET"
        return response


def live_settings() -> dict:
    """Where the page's script polls, and how often."""
    return {
        "dashboard_live_url": reverse("dashboard-live"),
        "poll_ms": POLL_MILLISECONDS,
        "idle_poll_ms": IDLE_POLL_MILLISECONDS,
    }


@never_cache
def front_page(request: HttpRequest) -> HttpResponse:
    """`/`: where to go for a visitor; the dashboard for a logged-in user."""
    if not request.user.is_authenticated:
        return render(request, "operations/home.html")
    context = {**live_settings(), "is_staff": request.user.is_active and request.user.is_staff}
    return render(request, "operations/front.html", context)
