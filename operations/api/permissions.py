from django.conf import settings
from rest_framework.permissions import BasePermission


class IsAuthenticatedOrAnonymousAllowed(BasePermission):
    """Authentication is required unless LONG_TASK_ALLOW_ANONYMOUS is on (trusted local use)."""

    def has_permission(self, request, view) -> bool:
        return bool(settings.LONG_TASK_ALLOW_ANONYMOUS or (request.user and request.user.is_authenticated))
