"""Pure pieces of the core: records, taints, pod selection, settings, the retry loop."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from lifecycled.errors import ConfigError, PermanentError, TemporaryError
from lifecycled.model import Action, InstanceId, NoticeKind
from lifecycled.platforms.kube_pods import is_skipped
from lifecycled.platforms.kubernetes import instance_id_of, with_taint
from lifecycled.record import DRAINING_TAINT, DrainRecord, HookRef, Outcome, Phase
from lifecycled.retry import retry
from lifecycled.settings import load_settings

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def record(**changes: object) -> DrainRecord:
    values: dict[str, object] = {
        "instance_id": InstanceId("i-0123456789abcdef0"),
        "kind": NoticeKind.LIFECYCLE_TERMINATE,
        "action": Action.DRAIN,
        "event_id": "e-1",
        "event_time": T0,
        "deadline": T0 + timedelta(hours=1),
        "hook": HookRef(name="drain", group="workers", token="a" * 36),
    }
    values.update(changes)
    return DrainRecord(**values)  # type: ignore[arg-type]


def test_record_round_trips_through_its_annotation_text() -> None:
    original = record()
    assert DrainRecord.from_json(original.to_json()) == original
    closed = original.closed(Outcome.DRAINED)
    assert closed.phase is Phase.DONE
    assert DrainRecord.from_json(closed.to_json()) == closed


def test_record_without_hook_round_trips() -> None:
    original = record(hook=None, kind=NoticeKind.SPOT_INTERRUPTION)
    assert DrainRecord.from_json(original.to_json()).hook is None


def test_taint_is_added_to_the_existing_list_not_replacing_it() -> None:
    node = {"spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}}
    taints = with_taint(node, "spot_interruption")
    assert [t["key"] for t in taints] == ["dedicated", DRAINING_TAINT]
    node["spec"]["taints"] = taints
    assert with_taint(node, "spot_interruption") == taints  # idempotent


def test_taint_on_a_node_without_taints() -> None:
    assert with_taint({"spec": {}}, "x") == [
        {"key": DRAINING_TAINT, "value": "x", "effect": "NoSchedule"}
    ]


@pytest.mark.parametrize(
    ("pod", "why"),
    [
        ({"metadata": {"ownerReferences": [{"kind": "DaemonSet"}]}}, "daemonset"),
        ({"metadata": {"annotations": {"kubernetes.io/config.mirror": "x"}}}, "mirror"),
        ({"metadata": {}, "status": {"phase": "Succeeded"}}, "finished"),
        ({"metadata": {}, "status": {"phase": "Failed"}}, "finished"),
        ({"metadata": {"ownerReferences": [{"kind": "ReplicaSet"}]}}, None),
        (
            {"metadata": {"ownerReferences": [{"kind": "Job"}]}, "status": {"phase": "Running"}},
            None,
        ),
    ],
)
def test_which_pods_a_drain_leaves_alone(pod: dict[str, object], why: str | None) -> None:
    assert is_skipped(pod) == why


@pytest.mark.parametrize(
    ("provider_id", "expected"),
    [
        ("aws:///us-east-1a/i-0123456789abcdef0", "i-0123456789abcdef0"),
        ("aws://us-east-1a/i-0abc1234", "i-0abc1234"),
        ("gce://project/zone/name", None),
        ("", None),
        ("aws:///us-east-1a/fargate-ip-10-0-0-1", None),
    ],
)
def test_instance_id_from_provider_id(provider_id: str, expected: str | None) -> None:
    assert instance_id_of({"spec": {"providerID": provider_id}}) == expected


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIFECYCLED_QUEUE_URL", "http://q")
    monkeypatch.setenv("LIFECYCLED_ALLOWED_ACCOUNTS", "111111111111, 222222222222")
    monkeypatch.setenv("LIFECYCLED_RETRY_DELAYS", "0.1,1,3")
    settings = load_settings()
    assert settings.scope.allowed_accounts == frozenset({"111111111111", "222222222222"})
    assert settings.calls.retry_delays == (0.1, 1.0, 3.0)
    assert load_settings(rebalance_action="drain").drain.rebalance_action == "drain"


def test_settings_refuse_nonsense(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIFECYCLED_QUEUE_URL", raising=False)
    with pytest.raises(ConfigError, match="QUEUE_URL"):
        load_settings()
    with pytest.raises(ConfigError):
        load_settings(queue_url="http://q", sqs_max_messages=11)
    with pytest.raises(ConfigError):
        load_settings(queue_url="http://q", rebalance_action="explode")
    with pytest.raises(ConfigError, match="LEADER_ELECTION"):
        load_settings(source="imds", node_name="n1", leader_election=True)


async def test_retry_retries_temporary_errors_and_honours_their_delay() -> None:
    calls: list[float] = []
    loop = asyncio.get_running_loop()

    async def flaky() -> str:
        calls.append(loop.time())
        if len(calls) < 3:
            raise TemporaryError("busy", delay=0.01 if len(calls) == 2 else None)
        return "ok"

    assert await retry(flaky, delays=(0.02, 5.0), what="flaky") == "ok"
    assert len(calls) == 3
    assert calls[2] - calls[1] < 1.0  # the error's own delay won over the 5 s default


async def test_retry_gives_up_on_permanent_errors_and_past_the_deadline() -> None:
    attempts = 0

    async def broken() -> None:
        nonlocal attempts
        attempts += 1
        raise PermanentError("no")

    with pytest.raises(PermanentError):
        await retry(broken, delays=(0.01, 0.01), what="broken")
    assert attempts == 1

    async def busy() -> None:
        raise TemporaryError("busy")

    loop = asyncio.get_running_loop()
    with pytest.raises(TemporaryError):
        await retry(busy, delays=(10.0,), what="busy", deadline=loop.time() + 1)


def test_aws_region_comes_from_our_setting_then_aws_region(monkeypatch: pytest.MonkeyPatch) -> None:
    from lifecycled.clients.aws import region_of

    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert region_of(load_settings(queue_url="http://q")) == "eu-west-1"
    assert region_of(load_settings(queue_url="http://q", region="ap-south-1")) == "ap-south-1"
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("LIFECYCLED_REGION", raising=False)
    assert region_of(load_settings(queue_url="http://q")) is None


def test_taint_key_and_effect_are_settings() -> None:
    from lifecycled.platforms.kubernetes import cordoned_by_others, without_taint

    node = {"spec": {"unschedulable": True, "taints": [{"key": "other", "effect": "NoSchedule"}]}}
    taints = with_taint(node, "spot_interruption", "example.com/draining", "NoExecute")
    assert taints[-1] == {
        "key": "example.com/draining",
        "value": "spot_interruption",
        "effect": "NoExecute",
    }
    tainted = {"spec": {"unschedulable": True, "taints": taints}}
    assert not cordoned_by_others(tainted, "example.com/draining")
    assert cordoned_by_others(tainted)  # the default key is not there
    assert without_taint(tainted, "example.com/draining") == [
        {"key": "other", "effect": "NoSchedule"}
    ]


def test_pod_grace_seconds_is_capped_by_the_deadline() -> None:
    from lifecycled.platforms.kubernetes import grace_for

    assert grace_for(None, 100.0) is None  # the pod's own
    assert grace_for(30, 100.0) == 30
    assert grace_for(30, 12.7) == 12
    assert grace_for(30, 0.4) == 1  # never 0 (an immediate delete)
    assert grace_for(30, -5.0) == 1
