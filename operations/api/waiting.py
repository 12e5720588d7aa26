"""Long polls and streams (SPEC §8: no one user can take the service from the others).

- Bounded per user: a long poll that has to wait takes one of LONG_TASK_MAX_WAITS_PER_USER
  slots, a stream (rows, row errors, download) one of LONG_TASK_MAX_STREAMS_PER_USER; with every
  slot taken the request is a 429 with Retry-After. Slots are keys in Django's cache, taken with
  `cache.add` (atomic in every backend), so that the count holds across the web's processes when
  they share a cache; each expires on its own, so that a process killed mid-wait frees its slots.
- Served without taking the threads other requests need: the views are async wrappers around
  the DRF views. The DRF view (authentication, throttles, the first read) runs in a thread as any
  sync view; a long poll that must wait then waits on the event loop, and a stream under an ASGI
  server hands its chunks over one at a time, so that a slow reader waits on its socket (and the
  stream stays O(chunk) in memory: Django's ASGI handler would read a sync iterator whole). The
  sync-only middlewares (WhiteNoise's among them) still run each request from a thread of its
  own, which stays parked while it waits; Django's ASGI handler makes one per request rather
  than taking it from a shared pool, so a waiting request costs a parked thread, bounded by the
  per-user slots, and never one another user's request was waiting for.
- A waiting long poll reads its row again only when told that it changed: on PostgreSQL the
  process's one listener wakes it (api/notifications.py), so that waiting costs the database
  nothing; while that listener is not connected, and on SQLite, it reads the row every so often.
"""

import asyncio
import contextlib
import functools
import math
import time
import uuid
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import cache
from django.core.handlers.asgi import ASGIRequest
from django.db import connection
from django.http import JsonResponse
from rest_framework.exceptions import Throttled
from rest_framework.response import Response
from rest_framework.settings import api_settings

from operations import selectors
from operations.api import notifications
from operations.api.throttling import client_address
from operations.errors import NotFound
from operations.models import Operation

# How often a waiting long poll reads the row again (one primary-key read) when no notification
# wakes it: on SQLite; on PostgreSQL while the listener connects again (a notification sent
# meanwhile is lost), slower, since the listener wakes every long poll once it listens again.
POLL_SECONDS = 0.1
UNHEARD_POLL_SECONDS = 1.0
# A stream's slot lives this long past its last chunk; refreshed every third of it while the
# chunks go (a stalled reader's slot runs out: it holds no thread meanwhile).
STREAM_SLOT_SECONDS = 60.0
# A long poll's slot lives this long past its deadline (a process killed mid-wait).
WAIT_SLOT_GRACE_SECONDS = 30.0
LIMITS = {"waits": "LONG_TASK_MAX_WAITS_PER_USER", "streams": "LONG_TASK_MAX_STREAMS_PER_USER"}
MESSAGES = {
    "waits": "Too many long polls at once ({limit} per user); try again when one has answered",
    "streams": "Too many downloads at once ({limit} per user); try again when one has finished",
}


# --- slots ------------------------------------------------------------------------------------


@dataclass
class Slot:
    key: str = ""
    token: str = ""

    def keep(self, seconds: float) -> None:
        if self.key:
            cache.touch(self.key, seconds)

    def release(self) -> None:
        """Free the slot (unless it ran out and is someone else's now)."""
        if self.key and (cache.get(self.key) or ("",))[0] == self.token:
            cache.delete(self.key)
        self.key = ""


def _ident(user, request) -> str:
    return f"user{user.pk}" if user is not None and user.is_authenticated else f"address{client_address(request)}"


def take_slot(request, kind: str, *, seconds: float) -> Slot:
    """One of the caller's slots of `kind` for `seconds`; Throttled (429, Retry-After: when the
    first of the others runs out) when every one is taken. A limit of 0: no bound."""
    limit = getattr(settings, LIMITS[kind])
    if limit <= 0:
        return Slot()
    ident = _ident(getattr(request, "user", None), request)
    keys = [f"long-task:{kind}:{ident}:{number}" for number in range(limit)]
    token, now = uuid.uuid4().hex, time.time()
    for key in keys:
        if cache.add(key, (token, now + seconds), timeout=seconds):
            return Slot(key, token)
    ends = [value[1] for value in cache.get_many(keys).values()]
    wait = max(1, math.ceil(min(ends, default=now + 1) - now))
    raise Throttled(wait=wait, detail=MESSAGES[kind].format(limit=limit))


# --- long polls -------------------------------------------------------------------------------


class PendingChange(Response):
    """What a status view returns when its answer waits for a change: the async wrapper waits
    (holding no thread), then answers with `answer(op)`."""

    def __init__(self, request, *, op: Operation, etag: str, seconds: float, answer):
        super().__init__()
        self.slot = take_slot(request, "waits", seconds=seconds + WAIT_SLOT_GRACE_SECONDS)
        self.op, self.etag, self.answer = op, etag, answer
        self.deadline = time.monotonic() + seconds
        self.notified = selectors.changes_are_notified()

    def respond(self, op: Operation | None, error: Exception | None) -> Response:
        response = self.answer(op) if error is None else api_settings.EXCEPTION_HANDLER(error, self.renderer_context)
        response.accepted_renderer = self.accepted_renderer
        response.accepted_media_type = self.accepted_media_type
        response.renderer_context = self.renderer_context
        for header in ("Vary", "Allow"):
            if self.has_header(header):
                response.headers.setdefault(header, self[header])
        return response


async def changed(op: Operation, etag: str, deadline: float, *, notified: bool = False) -> Operation:
    """The operation once its status differs from `etag`, or at `deadline` as it is then. Each
    read takes a thread for one primary-key read; the waits in between take none. `notified`:
    the reads wait for the listener's word that the row changed (api/notifications.py)."""
    if notified:
        return await _changed_when_told(op, etag, deadline)
    read = sync_to_async(selectors.operation_read_again)
    while (left := deadline - time.monotonic()) > 0:
        await asyncio.sleep(min(POLL_SECONDS, left))
        op = await read(op)
        if selectors.status_etag(op) != etag:
            break
    return op


async def _changed_when_told(op: Operation, etag: str, deadline: float) -> Operation:
    read = sync_to_async(selectors.operation_read_again)
    listener = notifications.listener()
    with listener.watch(op.pk) as told:
        if listener.listening:
            told.set()  # one read now: the row may have changed between the view's read and the watch
        while (left := deadline - time.monotonic()) > 0:
            listening = listener.listening  # else the listener wakes every long poll once it is
            await _wait(told, left if listening else min(UNHEARD_POLL_SECONDS, left))
            if told.is_set() or not listening:
                told.clear()
                op = await read(op)
                if selectors.status_etag(op) != etag:
                    break
    return op


async def _wait(event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()


def _give_pooled_connection_back() -> None:
    """While a long poll waits, its connection serves other requests when it came from a pool
    (each read takes one again at no cost); a connection of its own is kept, since each read
    would otherwise open a new one."""
    if connection.settings_dict.get("OPTIONS", {}).get("pool"):
        connection.close()


async def _answer_when_changed(pending: PendingChange) -> Response:
    await sync_to_async(_give_pooled_connection_back)()
    try:
        op, error = await changed(pending.op, pending.etag, pending.deadline, notified=pending.notified), None
    except NotFound as exc:  # deleted meanwhile
        op, error = None, exc
    finally:
        await sync_to_async(pending.slot.release)()
    return await sync_to_async(pending.respond)(op, error)


# --- streams ----------------------------------------------------------------------------------


class HeldChunks:
    """A stream's chunks, holding its slot until the response is closed (Django closes the
    response, and so this, when the stream ends or the client goes away)."""

    def __init__(self, chunks, slot: Slot):
        self.chunks, self.slot = chunks, slot
        self.kept_at = time.monotonic()

    def _keep(self) -> None:
        if time.monotonic() - self.kept_at > STREAM_SLOT_SECONDS / 3:
            self.slot.keep(STREAM_SLOT_SECONDS)
            self.kept_at = time.monotonic()

    def __iter__(self):
        for chunk in self.chunks:
            self._keep()
            yield chunk

    def close(self) -> None:
        try:
            if hasattr(self.chunks, "close"):
                self.chunks.close()
        finally:
            self.slot.release()


class AsyncHeldChunks(HeldChunks):
    """The same for an ASGI server: each chunk is made in a thread, handed over on the loop."""

    def __iter__(self):
        raise TypeError("an async stream")

    async def __aiter__(self):
        chunks = iter(self.chunks)
        next_chunk = sync_to_async(next)
        while (chunk := await next_chunk(chunks, None)) is not None:
            self._keep()
            yield chunk


def _hold_stream(request, response):
    """The streaming response holding a stream slot, or a 429 when the caller has none left."""
    try:
        slot = take_slot(request, "streams", seconds=STREAM_SLOT_SECONDS)
    except Throttled as exc:
        # Not response.close(): that signals the end of the request, which goes on with the 429.
        # What the stream holds (an open file at most: the rows' generators have not started)
        # is closed as the response is dropped.
        return JsonResponse({"message": exc.detail}, status=exc.status_code, headers={"Retry-After": str(exc.wait)})
    held = (AsyncHeldChunks if isinstance(request, ASGIRequest) else HeldChunks)(response.streaming_content, slot)
    response.streaming_content = held
    return response


# --- the views ----------------------------------------------------------------------------------


def bounded(view):
    """`view` (a DRF view function) as an async view: a PendingChange it returns is waited for,
    a streaming response holds a stream slot."""
    run = sync_to_async(view)

    async def bounded_view(request, *args, **kwargs):
        response = await run(request, *args, **kwargs)
        if isinstance(response, PendingChange):
            return await _answer_when_changed(response)
        if getattr(response, "streaming", False) and 200 <= response.status_code < 300:
            return await sync_to_async(_hold_stream)(request, response)
        return response

    functools.update_wrapper(bounded_view, view)  # DRF's attributes (cls, actions...) for the schema
    return bounded_view
