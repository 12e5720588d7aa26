"""Throttles (429 with Retry-After), their rates from LONG_TASK_THROTTLE_RATES, counted in
Django's cache (per process with the default LocMemCache: several web processes want a shared
cache, see the README's "Security and limits").

- `anonymous`: requests without a user (when LONG_TASK_ALLOW_ANONYMOUS is on), per client address;
- `writes`: requests that change something (register, start, pause, resume, terminate), per user;
- `uploads`: requests that send a file to import, per user;
- `reads`: requests that read (status, lists, events, rows, row errors, downloads), per user;
- `login_failures` / `login_failures_address`: failed HTTP basic logins, per client address and
  user name / per client address. Over the limit, a login is refused before its password is
  hashed (a PBKDF2 is deliberately expensive), so guessing costs the server nothing.

Views say which scopes their requests count against: `throttle_scopes`, or for a viewset
`throttle_scopes_by_action`.
"""

import hashlib
import math
import time

from django.conf import settings
from django.core.cache import cache
from rest_framework.exceptions import Throttled
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


class FailedLogins:
    """Failed password checks of one user name from one client address, counted per pair and
    per address in sliding windows of the `login_failures*` rates."""

    def __init__(self, request, username: str):
        address = client_address(request)
        name = hashlib.sha256(username.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        self.windows = [
            (f"login-failures:{address}:{name}", rate_of("login_failures")),
            (f"login-failures:{address}", rate_of("login_failures_address")),
        ]

    def _recent(self, now: float):
        """(key, number allowed, window seconds, failures within the window) of each limit."""
        for key, rate in self.windows:
            if rate is not None:
                number, seconds = rate
                yield key, number, seconds, [moment for moment in cache.get(key, []) if moment > now - seconds]

    def check(self) -> None:
        """Throttled (429) while a limit is reached: no password is checked then."""
        now = time.time()
        for _, number, seconds, recent in self._recent(now):
            if len(recent) >= number:
                raise Throttled(wait=math.ceil(recent[-number] + seconds - now), detail="Too many failed logins.")

    def add(self) -> None:
        now = time.time()
        for key, number, seconds, recent in self._recent(now):
            cache.set(key, [*recent, now][-number:], seconds)
