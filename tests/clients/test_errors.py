"""Errors are classified by code (AWS) or status (Kubernetes) in the client layer; callers
catch the specific types."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from lifecycled.clients.aws import AwsClients
from lifecycled.clients.aws.autoscaling import HookActionGone
from lifecycled.clients.aws.elbv2 import InvalidTargetError, LbTarget
from lifecycled.clients.kube import EvictionBlocked, KubeClient, TooManyRequests, _error
from lifecycled.errors import NotFoundError, PermanentError, TemporaryError
from lifecycled.lifecycle import LifecycleHooks
from lifecycled.observe import Metrics
from lifecycled.platforms.targets import TargetGroups
from lifecycled.record import HookRef
from lifecycled.settings import Settings

SERVICES = ("sqs", "ec2", "autoscaling", "ecs", "elbv2", "elb")
HOOK = HookRef(name="drain", group="workers", token="t" * 36)


def client_error(code: str, message: str = "", status: int = 400) -> ClientError:
    reply: Any = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(reply, "Operation")


class Failing:
    """An aiobotocore client whose every operation raises `error`."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def __getattr__(self, operation: str) -> Any:
        async def call(**params: Any) -> dict[str, Any]:
            raise self.error

        return call


def failing(error: Exception, services: tuple[str, ...] = SERVICES) -> AwsClients:
    return AwsClients({service: Failing(error) for service in services}, Metrics())


def settings() -> Settings:
    return Settings(queue_url="http://unused", retry_delays=(0.01,))


async def test_an_action_aws_no_longer_knows_is_gone() -> None:
    for message in (
        "No active Lifecycle Action found with token abc",
        "No Lifecycle Action found with instance ID i-0123456789abcdef0",
    ):
        aws = failing(client_error("ValidationError", message))
        with pytest.raises(HookActionGone):
            await aws.autoscaling.complete_lifecycle_action("g", "h", "t", "i-1", "CONTINUE")
        with pytest.raises(HookActionGone):
            await aws.autoscaling.record_heartbeat("g", "h", "t", "i-1")
    other = failing(client_error("ValidationError", "Group g not found"))
    with pytest.raises(PermanentError) as caught:
        await other.autoscaling.complete_lifecycle_action("g", "h", "t", "i-1", "CONTINUE")
    assert not isinstance(caught.value, HookActionGone)


async def test_completing_a_gone_action_is_not_an_error() -> None:
    metrics = Metrics()
    gone = failing(client_error("ValidationError", "No active Lifecycle Action found"))
    assert await LifecycleHooks(gone, settings(), metrics).complete(HOOK, "i-1") is False
    assert metrics.registry.get_sample_value(
        "lifecycled_lifecycle_actions_total", {"result": "expired"}
    )
    denied = failing(client_error("AccessDenied", "not authorized", 403))
    with pytest.raises(PermanentError):
        await LifecycleHooks(denied, settings(), metrics).complete(HOOK, "i-1")
    assert metrics.registry.get_sample_value(
        "lifecycled_lifecycle_actions_total", {"result": "error"}
    )


async def test_heartbeats_stop_once_the_action_is_gone() -> None:
    gone = failing(client_error("ValidationError", "No active Lifecycle Action found"))
    base = settings()  # heartbeat_fraction 0: one beat a second
    quick = base.model_copy(
        update={"hooks": base.hooks.model_copy(update={"heartbeat_fraction": 0})}
    )
    hooks = LifecycleHooks(gone, quick, Metrics())
    await asyncio.wait_for(hooks.hold(HOOK, "i-1", asyncio.Event()), 5)  # returns, not loops


async def test_deregistering_a_target_that_is_not_registered_is_done() -> None:
    target = [LbTarget("i-1", 80)]
    invalid = failing(client_error("InvalidTarget", "The specified target does not exist"))
    with pytest.raises(InvalidTargetError):
        await invalid.elbv2.deregister_targets("arn:tg", target)
    await TargetGroups(invalid, 60).deregister("arn:tg", target)
    missing = failing(client_error("TargetGroupNotFound", "One or more target groups not found"))
    with pytest.raises(NotFoundError):
        await TargetGroups(missing, 60).deregister("arn:tg", target)


async def test_an_instance_a_classic_load_balancer_does_not_know_is_unknown() -> None:
    for code in ("InvalidInstance", "InvalidInstanceID.NotFound"):
        aws = failing(client_error(code, "Could not find EC2 instance i-1."))
        assert await aws.elb.classic_instance_state("web", "i-1") == "Unknown"
    gone = failing(client_error("LoadBalancerNotFound", "There is no ACTIVE Load Balancer"))
    with pytest.raises(NotFoundError):
        await gone.elb.classic_instance_state("web", "i-1")


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (client_error("Throttling", "Rate exceeded"), TemporaryError),
        (client_error("Whatever", "", 503), TemporaryError),
        (EndpointConnectionError(endpoint_url="http://x"), TemporaryError),
        (client_error("AWS.SimpleQueueService.NonExistentQueue"), NotFoundError),
        (client_error("AccessDenied", "", 403), PermanentError),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, type) else v.__name__,
)
async def test_the_generic_translation(error: Exception, expected: type[Exception]) -> None:
    with pytest.raises(expected) as caught:
        await failing(error).sqs.delete_message("http://queue", "receipt")
    assert type(caught.value) is expected


async def test_a_service_that_was_not_opened_is_a_key_error() -> None:
    aws = failing(client_error("Throttling"), services=("sqs",))
    with pytest.raises(KeyError):
        await aws.elbv2.target_states("arn:tg")


def test_kubernetes_errors_are_classified_by_status() -> None:
    throttled = _error(429, b'{"message": "Too many requests"}', {"Retry-After": "3"})
    assert isinstance(throttled, TooManyRequests) and throttled.delay == 3.0
    unavailable = _error(503, b"{}", None)
    assert isinstance(unavailable, TemporaryError)
    assert not isinstance(unavailable, TooManyRequests)


async def test_an_eviction_refused_with_429_is_blocked_by_a_budget() -> None:
    kube = KubeClient.__new__(KubeClient)

    async def refuse(operation: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        raise _error(429, b'{"message": "Cannot evict pod"}', {"Retry-After": "7"})

    kube._request = refuse  # type: ignore[method-assign]
    kube._core = SimpleNamespace(create_namespaced_pod_eviction=None)  # type: ignore[assignment]
    with pytest.raises(EvictionBlocked) as caught:
        await kube.evict("default", "web-1")
    assert caught.value.delay == 7.0
