"""Throttles (429 with Retry-After), their rates from LONG_TASK_THROTTLE_RATES, counted in
Django's cache (per process with the default LocMemCache: several web processes want a shared
cache, see docs/configuration.md).

- `anonymous`: requests without a user (when LONG_TASK_ALLOW_ANONYMOUS is on), per client address;
- `writes`: requests that change something (register, start, pause, resume, terminate), per user;
- `uploads`: requests that send a file to import, per user;
- `pieces`: the requests of resumable uploads (tus: create, pieces, offsets, deletes), per user;
- `reads`: requests that read (status, lists, events, rows, row errors, downloads), per user;
- `login_failures` / `login_failures_address`: failed logins (HTTP basic, the admin's and the
  API's login pages), per user name from a client address / per client address, counted in the
  database rather than in the cache (see operations.logins).

Views say which scopes their requests count against: `throttle_scopes`, or for a viewset
`throttle_scopes_by_action`.
"""

from django.conf import settings
from rest_framework.throttling import BaseThrottle, SimpleRateThrottle

PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def rate_of(scope: str) -> tuple[int, int] | None:
    """(requests, seconds) of a scope's rate, "N/second|minute|hour|day"; None: no limit."""
    rate = settings.LONG_TASK_THROTTLE_RATES.get(scope)
    if not rate:
        return None
    number, period = rate.split("/")
    return int(number), PERIODS[period.strip()[0]]


def client_address(request) -> str:
    """The client's address: REMOTE_ADDR, or the one the last of REST_FRAMEWORK's NUM_PROXIES
    trusted proxies saw (X-Forwarded-For is the client's to write, so never taken whole)."""
    return BaseThrottle().get_ident(request) or "unknown"


def scopes_of(view) -> tuple[str, ...]:
    by_action = getattr(view, "throttle_scopes_by_action", None)
    if by_action is not None:
        return by_action.get(getattr(view, "action", None), ())
    return getattr(view, "throttle_scopes", ())


class ScopeThrottle(SimpleRateThrottle):
    """A DRF rate throttle for the requests of views that name its scope, keyed by user (by
    client address for anonymous requests). The rate is read when a request comes, so that a
    change of settings applies at once."""

    def get_rate(self) -> str | None:
        return settings.LONG_TASK_THROTTLE_RATES.get(self.scope) or None

    def applies(self, request, view) -> bool:
        return self.scope in scopes_of(view)

    def get_cache_key(self, request, view) -> str | None:
        if not self.applies(request, view):
            return None
        user = request.user
        ident = f"user{user.pk}" if user and user.is_authenticated else client_address(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}


class AnonymousThrottle(ScopeThrottle):
    scope = "anonymous"

    def applies(self, request, view) -> bool:
        return not (request.user and request.user.is_authenticated)


class WriteThrottle(ScopeThrottle):
    scope = "writes"


class UploadThrottle(ScopeThrottle):
    scope = "uploads"


class ReadThrottle(ScopeThrottle):
    scope = "reads"


class PieceThrottle(ScopeThrottle):
    scope = "pieces"
