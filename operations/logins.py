"""Password guessing, counted where every web process sees it.

HTTP basic (operations.api.authentication), the admin's login page and the API's all check a
password through django.contrib.auth.authenticate(), and so through `GuardedModelBackend`. Before
it hashes a password (a PBKDF2, deliberately expensive), it takes a place in two counters, in one
transaction of the database that every web process shares: the user name from the client's
address (rate `login_failures`), and the address whatever the user names (`login_failures_address`).
The UPDATE that takes a place holds the counter's row until the transaction ends, so that
parallel guesses queue there and each sees the places taken before it: past either limit, the
login is refused (`LoginsLocked`, a 429 with Retry-After) before its hash, and takes no place. A
password that proves right gives its place back, so the counters hold the failures and the
checks under way. A counter's window starts with its first check (since the counter was last
empty) and lasts its rate's period.

A lockout per user name alone, from any address, would let anyone lock anyone out: guesses from
many addresses are bounded per address instead.
"""

import hashlib
import math
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.db import IntegrityError, transaction
from django.db.models import Case, DateTimeField, F, IntegerField, Q, Value, When
from django.http import JsonResponse
from django.utils.timezone import now

from operations.api.throttling import client_address, rate_of
from operations.models import LoginCounter

MESSAGE = "Too many failed logins."


class LoginsLocked(Exception):
    """A login refused before its password was checked: try again in `wait` seconds."""

    def __init__(self, wait: float):
        super().__init__(MESSAGE)
        self.wait = max(1, math.ceil(wait))


def counters(request, username: str) -> list[tuple[str, int, int]]:
    """(key, places, seconds) of each limit that applies to a login, in the order they are taken."""
    address = client_address(request) if request is not None else "in-process"
    found = []
    for scope, ident in (("login_failures", f"{address}\0{username}"), ("login_failures_address", address)):
        rate = rate_of(scope)
        if rate is not None:
            digest = hashlib.sha256(ident.encode("utf-8", "surrogatepass")).hexdigest()[:48]
            found.append((f"{scope}:{digest}", *rate))
    return found


def _take(key: str, seconds: int, moment) -> tuple[int, object, bool]:
    """One place more in a counter, or the first of a new window (the last one ended, or all its
    places were given back): (places taken, window end, whether the counter is new)."""
    live = Q(window_ends__gt=moment, count__gt=0)
    ends = moment + timedelta(seconds=seconds)
    updated = LoginCounter.objects.filter(key=key).update(
        count=Case(When(live, then=F("count") + 1), default=Value(1), output_field=IntegerField()),
        window_ends=Case(When(live, then=F("window_ends")), default=Value(ends), output_field=DateTimeField()),
    )
    if updated:
        return *LoginCounter.objects.filter(key=key).values_list("count", "window_ends").get(), False
    try:
        with transaction.atomic():
            LoginCounter.objects.create(key=key, count=1, window_ends=ends)
    except IntegrityError:  # created meanwhile by a parallel login: count in that one
        return _take(key, seconds, moment)
    return 1, ends, True


def take_places(limits: list[tuple[str, int, int]]) -> None:
    """A place in each counter, all or none; LoginsLocked if one is full."""
    moment = now()
    with transaction.atomic():
        created = False
        for key, places, seconds in limits:
            taken, ends, new = _take(key, seconds, moment)
            if taken > places:
                raise LoginsLocked((ends - moment).total_seconds())  # leaving the block undoes the places
            created |= new
    if created:
        _forget_ended_windows(moment)


def give_back(limits: list[tuple[str, int, int]]) -> None:
    # One statement a counter, none holding a row while it waits for another.
    for key, _, _ in limits:
        LoginCounter.objects.filter(key=key, count__gt=0).update(count=F("count") - 1)


def _forget_ended_windows(moment) -> None:
    """Counters whose window ended a while ago (a new one would start anyway), except those a
    login is counting in right now: the table stays as small as the recent logins. Each new
    counter deletes a few, so they never pile up."""
    ended = LoginCounter.objects.filter(window_ends__lt=moment - timedelta(minutes=10))
    with transaction.atomic():
        keys = list(ended.select_for_update(skip_locked=True).values_list("pk", flat=True)[:10])
        LoginCounter.objects.filter(pk__in=keys).delete()


class GuardedModelBackend(ModelBackend):
    """Django's user names and passwords, with the password checks counted as above."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if username is None:
            username = kwargs.get(get_user_model().USERNAME_FIELD)
        if username is None or password is None:
            return None
        limits = counters(request, str(username))
        take_places(limits)
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is not None:
            give_back(limits)
        return user


class LoginsLockedMiddleware:
    """The login pages (the admin's, the API's) answer a locked-out login with a JSON 429 and
    Retry-After, as the API does, instead of a server error."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, LoginsLocked):
            return None
        message = f"{MESSAGE} Try again in {exception.wait} seconds."
        return JsonResponse({"message": message}, status=429, headers={"Retry-After": str(exception.wait)})
