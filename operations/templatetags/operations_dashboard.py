"""`{% operations_dashboard %}`: the dashboard's panel, on the admin's index and the front page
(operations/admin/dashboard.py); `{% dashboard_live_attributes %}`: where and how often the
page's script polls it."""

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString

from operations.admin.dashboard import PANEL_TEMPLATE, dashboard_context, live_settings

register = template.Library()


@register.inclusion_tag(PANEL_TEMPLATE, takes_context=True)
def operations_dashboard(context) -> dict:
    return dashboard_context(context["request"])


@register.simple_tag
def dashboard_live_attributes() -> SafeString:
    live = live_settings()
    return format_html(
        'data-live-url="{}" data-poll-ms="{}" data-idle-poll-ms="{}"',
        live["dashboard_live_url"],
        live["poll_ms"],
        live["idle_poll_ms"],
    )
