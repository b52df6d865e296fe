"""The IMDS emulator's token semantics, scripted paths and faults, over real HTTP."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import AsyncIterator

import aiohttp
import pytest

from devstack.imds import (
    HISTORY,
    REBALANCE,
    SCHEDULED,
    SPOT,
    TARGET_STATE,
    TOKEN_HEADER,
    TTL_HEADER,
    ImdsEmulator,
    in_thread,
)

INSTANCE = "i-0123456789abcdef0"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def imds(clock: Clock) -> AsyncIterator[ImdsEmulator]:
    async with ImdsEmulator(instance_id=INSTANCE, region="eu-west-1", clock=clock) as emulator:
        yield emulator


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def token(http: aiohttp.ClientSession, imds: ImdsEmulator, ttl: str = "60") -> str:
    async with http.put(f"{imds.url}/latest/api/token", headers={TTL_HEADER: ttl}) as reply:
        assert reply.status == 200
        assert reply.headers[TTL_HEADER] == ttl
        return await reply.text()


async def get(
    http: aiohttp.ClientSession, imds: ImdsEmulator, path: str, tok: str | None
) -> tuple[int, str]:
    headers = {TOKEN_HEADER: tok} if tok is not None else {}
    async with http.get(f"{imds.url}/latest/{path}", headers=headers) as reply:
        return reply.status, await reply.text()


@pytest.mark.parametrize("ttl", [None, "", "abc", "0", "21601", "-5"])
async def test_a_token_needs_a_ttl_between_1_and_21600(
    imds: ImdsEmulator, http: aiohttp.ClientSession, ttl: str | None
) -> None:
    headers = {TTL_HEADER: ttl} if ttl is not None else {}
    async with http.put(f"{imds.url}/latest/api/token", headers=headers) as reply:
        assert reply.status == 400


async def test_a_forwarded_token_request_is_refused(
    imds: ImdsEmulator, http: aiohttp.ClientSession
) -> None:
    headers = {TTL_HEADER: "60", "X-Forwarded-For": "10.0.0.1"}
    async with http.put(f"{imds.url}/latest/api/token", headers=headers) as reply:
        assert reply.status == 403


async def test_imdsv1_and_unknown_tokens_are_refused(
    imds: ImdsEmulator, http: aiohttp.ClientSession
) -> None:
    assert (await get(http, imds, "meta-data/instance-id", None))[0] == 401
    assert (await get(http, imds, "meta-data/instance-id", "made-up"))[0] == 401
    tok = await token(http, imds)
    assert await get(http, imds, "meta-data/instance-id", tok) == (200, INSTANCE)


async def test_a_token_stops_working_when_its_ttl_has_passed(
    imds: ImdsEmulator, http: aiohttp.ClientSession, clock: Clock
) -> None:
    tok = await token(http, imds, ttl="10")
    clock.now += 9.9
    assert (await get(http, imds, "meta-data/instance-id", tok))[0] == 200
    clock.now += 0.2
    assert (await get(http, imds, "meta-data/instance-id", tok))[0] == 401


async def test_expire_tokens_ends_every_token_at_once(
    imds: ImdsEmulator, http: aiohttp.ClientSession
) -> None:
    first, second = await token(http, imds), await token(http, imds)
    imds.expire_tokens()
    for tok in (first, second):
        assert (await get(http, imds, "meta-data/instance-id", tok))[0] == 401
    assert (await get(http, imds, "meta-data/instance-id", await token(http, imds)))[0] == 200


async def test_identity_and_placement(imds: ImdsEmulator, http: aiohttp.ClientSession) -> None:
    tok = await token(http, imds)
    status, text = await get(http, imds, "dynamic/instance-identity/document", tok)
    document = json.loads(text)
    assert status == 200
    assert document["instanceId"] == INSTANCE
    assert document["region"] == "eu-west-1"
    assert document["accountId"] == "123456789012"
    assert await get(http, imds, "meta-data/placement/availability-zone", tok) == (
        200,
        "eu-west-1a",
    )


async def test_scripted_paths_appear_and_disappear(
    imds: ImdsEmulator, http: aiohttp.ClientSession
) -> None:
    tok = await token(http, imds)
    for path in (SPOT, REBALANCE, TARGET_STATE):
        assert (await get(http, imds, path, tok))[0] == 404
    assert await get(http, imds, SCHEDULED, tok) == (200, "[]")

    action = imds.set_spot_action("stop")
    status, text = await get(http, imds, SPOT, tok)
    assert status == 200 and json.loads(text) == action
    assert action["action"] == "stop" and action["time"].endswith("Z")
    imds.clear_spot_action()
    assert (await get(http, imds, SPOT, tok))[0] == 404

    notice = imds.set_rebalance()
    assert json.loads((await get(http, imds, REBALANCE, tok))[1]) == notice
    imds.set_target_lifecycle_state("Terminated")
    assert await get(http, imds, TARGET_STATE, tok) == (200, "Terminated")


async def test_changes_can_be_scheduled_ahead(
    imds: ImdsEmulator, http: aiohttp.ClientSession, clock: Clock
) -> None:
    tok = await token(http, imds, ttl="600")
    imds.set_target_lifecycle_state("InService")
    imds.set_target_lifecycle_state("Terminated", after=30)
    assert (await get(http, imds, TARGET_STATE, tok))[1] == "InService"
    clock.now += 30
    assert (await get(http, imds, TARGET_STATE, tok))[1] == "Terminated"


async def test_scheduled_events_in_imds_format(
    imds: ImdsEmulator, http: aiohttp.ClientSession
) -> None:
    tok = await token(http, imds)
    event_id = imds.add_scheduled_event("instance-retirement")
    events = json.loads((await get(http, imds, SCHEDULED, tok))[1])
    assert [e["EventId"] for e in events] == [event_id]
    assert events[0]["State"] == "active" and events[0]["Code"] == "instance-retirement"
    assert events[0]["NotBefore"].endswith(" GMT")  # e.g. "21 Jan 2019 09:00:43 GMT"

    assert await get(http, imds, HISTORY, tok) == (200, "[]")
    imds.set_scheduled_state(event_id, "canceled")
    events = json.loads((await get(http, imds, SCHEDULED, tok))[1])
    assert events[0]["State"] == "canceled"
    assert events[0]["Description"].startswith("[Canceled]")
    assert json.loads((await get(http, imds, HISTORY, tok))[1]) == events
    imds.remove_scheduled_event(event_id)
    assert json.loads((await get(http, imds, SCHEDULED, tok))[1]) == []


async def test_injected_errors_and_delays(imds: ImdsEmulator, http: aiohttp.ClientSession) -> None:
    tok = await token(http, imds)
    imds.fail(503, times=2, path="meta-data/instance-id")
    statuses = [(await get(http, imds, "meta-data/instance-id", tok))[0] for _ in range(3)]
    assert statuses == [503, 503, 200]

    imds.delay(0.5)
    timeout = aiohttp.ClientTimeout(total=0.1)
    with pytest.raises(TimeoutError):
        await http.get(
            f"{imds.url}/latest/meta-data/instance-id",
            headers={TOKEN_HEADER: tok},
            timeout=timeout,
        )
    assert (await get(http, imds, "meta-data/instance-id", tok))[0] == 200

    imds.fail(500, times=1)  # every path, the token request included
    async with http.put(f"{imds.url}/latest/api/token", headers={TTL_HEADER: "5"}) as reply:
        assert reply.status == 500


async def test_instance_tags_only_when_enabled(http: aiohttp.ClientSession) -> None:
    tags = {"aws:autoscaling:groupName": "workers", "team": "data"}
    async with ImdsEmulator(instance_id=INSTANCE, tags=tags) as imds:
        tok = await token(http, imds)
        status, text = await get(http, imds, "meta-data/tags/instance", tok)
        assert status == 200 and text.split("\n") == sorted(tags)
        path = "meta-data/tags/instance/aws:autoscaling:groupName"
        assert await get(http, imds, path, tok) == (200, "workers")
    async with ImdsEmulator(instance_id=INSTANCE) as imds:
        tok = await token(http, imds)
        assert (await get(http, imds, "meta-data/tags/instance", tok))[0] == 404


def test_the_emulator_serves_from_a_thread() -> None:
    with in_thread(ImdsEmulator(instance_id=INSTANCE)) as imds:
        put = urllib.request.Request(
            f"{imds.url}/latest/api/token", method="PUT", headers={TTL_HEADER: "60"}
        )
        with urllib.request.urlopen(put, timeout=5) as reply:
            tok = reply.read().decode()
        imds.set_spot_action()
        get_spot = urllib.request.Request(f"{imds.url}/latest/{SPOT}", headers={TOKEN_HEADER: tok})
        with urllib.request.urlopen(get_spot, timeout=5) as reply:
            assert json.loads(reply.read())["action"] == "terminate"
