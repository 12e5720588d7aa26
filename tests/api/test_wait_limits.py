"""No one user can take the service from the others (SPEC §8): long polls that wait and streams
are bounded per user (429 with Retry-After past the bound, a slot freed when one ends), and reads
count against a throttle scope of their own. tests/processes/test_long_polls.py serves them from
the Procfile's server."""

import threading
from types import SimpleNamespace

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.core.cache import cache
from django.db import connection
from django.test import AsyncClient
from rest_framework.authtoken.models import Token

from operations.api import waiting
from operations.models import Operation
from tests.support import token_client, wait_for

S = Operation.State


@pytest.fixture
def running(user, in_state) -> Operation:
    return in_state(S.RUNNING, owner=user, file_size=100, position=10, lines_finished=1)


def taken(user, kind: str = "waits") -> int:
    keys = [f"long-task:{kind}:user{user.pk}:{number}" for number in range(8)]
    return len(cache.get_many(keys))


def assert_too_many(response, what: str) -> None:
    assert response.status_code == 429, response.content
    assert int(response["Retry-After"]) >= 1
    assert response.json()["message"].startswith(f"Too many {what} at once (4 per user)")


def long_poll(client, op: Operation, etag: str, seconds: float = 10):
    return client.get(f"/api/operations/{op.pk}/?wait_for_change={seconds}", HTTP_IF_NONE_MATCH=etag)


@pytest.mark.django_db(transaction=True)
def test_the_fifth_long_poll_of_a_user_is_a_429_and_a_slot_is_free_again_when_one_answers(
    user, other_user, running, settings
):
    settings.LONG_TASK_MAX_WAITS_PER_USER = 4
    etag = token_client(user).get(f"/api/operations/{running.pk}/")["ETag"]
    answers = []

    def hold():
        answers.append(long_poll(token_client(user), running, etag).status_code)
        connection.close()

    threads = [threading.Thread(target=hold) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: taken(user) == 4, timeout=8, what="four long polls waiting")
        assert_too_many(long_poll(token_client(user), running, etag), "long polls")
        assert taken(user) == 4 and answers == []
        # Another user's long polls have slots of their own; a request that needs no wait none.
        other = token_client(other_user)
        mine = Operation.objects.create(owner=other_user, op_type="Upload")
        assert other.get(f"/api/operations/{mine.pk}/?wait_for_change=0.2").status_code == 200
        stale = token_client(user).get(f"/api/operations/{running.pk}/?wait_for_change=10", HTTP_IF_NONE_MATCH='"0"')
        assert stale.status_code == 200
    finally:
        running.save(update_fields=["updated_at"])  # a change: every long poll answers
        for thread in threads:
            thread.join()
    assert answers == [200] * 4
    assert taken(user) == 0
    assert long_poll(token_client(user), running, etag, 0.1).status_code == 200  # (the ETag changed)


@pytest.mark.django_db(transaction=True)
def test_a_long_poll_frees_its_slot_when_its_time_is_up_or_the_operation_goes(user, running, settings):
    settings.LONG_TASK_MAX_WAITS_PER_USER = 1
    api = token_client(user)
    etag = api.get(f"/api/operations/{running.pk}/")["ETag"]
    assert long_poll(api, running, etag, 0.2).status_code == 304
    assert taken(user) == 0
    Operation.objects.filter(pk=running.pk).delete()
    assert long_poll(api, running, etag, 0.2).status_code == 404
    assert taken(user) == 0


@pytest.mark.django_db
def test_a_long_poll_refused_takes_no_slot_and_says_why(user, running, settings):
    settings.LONG_TASK_MAX_WAITS_PER_USER = 4
    for _ in range(4):
        waiting.take_slot(SimpleNamespace(user=user), "waits", seconds=30)  # held elsewhere
    api = token_client(user)
    etag = api.get(f"/get_status/?op_id={running.pk}")["ETag"]
    response = api.get(f"/get_status/?op_id={running.pk}&wait_for_change=5", HTTP_IF_NONE_MATCH=etag)
    assert_too_many(response, "long polls")
    assert 1 <= int(response["Retry-After"]) <= 30
    assert taken(user) == 4


@pytest.mark.django_db
def test_the_fifth_stream_of_a_user_is_a_429_until_one_is_closed(user, running, settings):
    settings.LONG_TASK_MAX_STREAMS_PER_USER = 4
    api = token_client(user)
    urls = [f"/api/operations/{running.pk}/rows/?format=csv", f"/api/operations/{running.pk}/row-errors/?format=jsonl"]
    held = [api.get(urls[number % 2]) for number in range(4)]
    assert [response.status_code for response in held] == [200] * 4 and taken(user, "streams") == 4
    assert_too_many(api.get(urls[0]), "downloads")
    assert api.get(f"/api/operations/{running.pk}/rows/").status_code == 200  # a page is no stream
    # The test client closes a response at the end of its stream, as a server does then (and when
    # the client goes away: tests/processes/test_long_polls.py).
    b"".join(held[0].streaming_content)
    assert taken(user, "streams") == 3
    again = api.get(urls[0])
    assert again.status_code == 200
    for response in [again, *held[1:]]:
        b"".join(response.streaming_content)
    assert taken(user, "streams") == 0


@pytest.mark.django_db(transaction=True)
def test_under_asgi_a_stream_is_handed_over_a_chunk_at_a_time_and_frees_its_slot(user, running):
    token = Token.objects.get_or_create(user=user)[0].key
    client = AsyncClient()

    async def download():
        url = f"/api/operations/{running.pk}/row-errors/?format=csv"
        response = await client.get(url, headers={"Authorization": f"Token {token}"})
        assert response.status_code == 200 and response.is_async  # not read whole by Django
        assert await sync_to_async(taken)(user, "streams") == 1
        body = b"".join([chunk async for chunk in response.streaming_content])
        await sync_to_async(response.close)()
        return body

    assert async_to_sync(download)().startswith(b"line_number")
    assert taken(user, "streams") == 0


@pytest.mark.django_db
def test_reads_are_throttled_per_user(user, other_user, running, settings):
    settings.LONG_TASK_THROTTLE_RATES = {**settings.LONG_TASK_THROTTLE_RATES, "reads": "3/minute"}
    alice, bob = token_client(user), token_client(other_user)
    assert alice.get("/api/operations/").status_code == 200
    assert alice.get(f"/api/operations/{running.pk}/").status_code == 200
    assert alice.get(f"/get_status/?op_id={running.pk}").status_code == 200
    throttled = alice.get("/api/operations/")
    assert throttled.status_code == 429 and int(throttled["Retry-After"]) >= 1
    assert alice.get(f"/api/operations/{running.pk}/rows/").status_code == 429
    assert bob.get("/api/operations/").status_code == 200
