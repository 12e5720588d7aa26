"""The worker's side of stop requests (operations/stop_requests.py), driven without its
listening thread: which notices count, when a chunk is given up, and that the cancels go to the
chunk a notice found and stop with it. tests/processes/test_stop_mid_chunk.py has the real one:
a worker process, a trigger's NOTIFY and a statement cancelled on PostgreSQL."""

import os
import threading

import pytest

from operations import stop_requests
from operations.stop_requests import ChunkCancelled, StopRequests

pytestmark = pytest.mark.django_db


class Connection:
    """What the listener cancels: counts the cancels; the chunk ends at the `ends_at`-th."""

    def __init__(self, requests: StopRequests, ends_at: int):
        self.requests, self.ends_at, self.cancels = requests, ends_at, 0

    def cancel_safe(self, timeout: float) -> None:
        self.cancels += 1
        if self.cancels == self.ends_at:
            threading.Thread(target=end_chunk, args=(self.requests,)).start()  # it holds the lock


def end_chunk(requests: StopRequests) -> None:
    with requests._lock:
        requests._chunk_connection = None
        requests._chunk_ended.set()


def test_only_a_notice_for_the_operation_worked_on_counts_once_between_chunks():
    requests = StopRequests(listen=False)
    requests._notified("7")
    with requests.working_on(7):
        assert not requests.requested()  # the notice before it started
        requests._notified("8")
        requests._notified("not a number")
        assert not requests.requested()
        requests._notified("7")
        assert requests.requested()
        assert not requests.requested()


def test_a_notice_just_before_a_chunk_gives_the_chunk_up():
    requests = StopRequests(listen=False)
    with requests.working_on(7):
        requests._notified("7")
        with pytest.raises(ChunkCancelled), requests.during_chunk():
            pytest.fail("the chunk was begun")
        assert requests.cancelled
        with requests.during_chunk():
            assert not requests.cancelled  # a new chunk starts afresh


def test_a_notice_during_a_chunk_cancels_it_again_until_it_ends_and_the_reading_gives_up(monkeypatch):
    requests = StopRequests(listen=False)
    monkeypatch.setattr(stop_requests, "_listener", (os.getpid(), requests))
    with requests.working_on(7), requests.during_chunk():
        stop_requests.check_chunk()  # nothing asked yet
        target = requests._chunk_connection = Connection(requests, ends_at=3)
        requests._notified("7")
        assert target.cancels == 3
        assert requests.cancelled
        with pytest.raises(ChunkCancelled):
            stop_requests.check_chunk()


def test_the_cancels_of_a_notice_are_for_the_chunk_it_found():
    requests = StopRequests(listen=False)
    with requests.working_on(7), requests.during_chunk():
        target = requests._chunk_connection = Connection(requests, ends_at=0)
        found = requests._chunk
        requests._chunk += 1  # that chunk ended and the next began before the cancels went
        requests._cancel_chunk(found)
        assert (target.cancels, requests.cancelled) == (0, False)


def test_where_nothing_listens_nothing_is_asked_or_cancelled(monkeypatch):
    monkeypatch.setattr(stop_requests, "_listener", None)
    unheard = stop_requests.for_this_process()
    with unheard.working_on(7), unheard.during_chunk():
        stop_requests.check_chunk()
    assert not unheard.requested() and not unheard.in_doubt() and not unheard.cancelled


class Job:
    def __init__(self, stops_mid_chunk: bool):
        self.stops_mid_chunk = stops_mid_chunk


@pytest.mark.parametrize(
    ("listening", "stops_mid_chunk", "cancellable"), [(True, True, True), (True, False, False), (False, True, False)]
)
def test_a_chunk_is_longer_only_where_a_pause_cancels_it(
    monkeypatch, settings, listening, stops_mid_chunk, cancellable
):
    """A chunk a pause does not wait for (the listener listens and the job gives a cancelled
    chunk up) takes the longer target; any other, the one that bounds the pause."""
    settings.LONG_TASK_CHUNK_SECONDS, settings.LONG_TASK_CANCELLABLE_CHUNK_SECONDS = 0.05, 0.25
    job = Job(stops_mid_chunk)
    assert stop_requests.chunk_seconds(job) == 0.05  # nothing listens in this process
    requests = StopRequests(listen=False)
    requests.listening = listening
    monkeypatch.setattr(stop_requests, "_listener", (os.getpid(), requests))
    assert stop_requests.chunk_seconds(job) == (0.25 if cancellable else 0.05)
