"""Installs the devstack's additions into moto, in this process, once.

moto's state is global per process, so these are class-level patches; they only add
behaviour moto lacks (lifecycle hooks, EC2 state-change events, the "account" field).
"""

from __future__ import annotations

import datetime
import functools
import threading
import time
from collections.abc import Callable
from typing import Any

import jsonpath_ng.ext as jsonpath_ext
import moto.autoscaling.models as asg_models
import moto.core.utils as moto_utils
import moto.sqs.models as sqs_models
from moto.autoscaling.models import autoscaling_backends
from moto.autoscaling.responses import AutoScalingResponse
from moto.core.responses import ActionResult, EmptyResult
from moto.ec2.models.instances import Instance
from moto.events.utils import EventTemplateParser

from . import ecs, emit
from .asg import LOCK, HookedBackend, HookedGroup, HookedLifecycleHook
from .payloads import state_change

# moto's default drops "account" from events delivered to targets; AWS always sends it.
EVENT_TEMPLATE = (
    '{"version": "0", "id": "<id>", "detail-type": "<detail-type>", "source": "<source>", '
    '"account": "<account>", "time": <time>, "region": "<region>", '
    '"resources": <resources>, "detail": <detail>}'
)

_installed = False


def install() -> None:
    global _installed
    with LOCK:
        if _installed:
            return
        _install_backend()
        _install_responses()
        _install_ec2_state_events()
        _install_ecs()
        _install_fast_sqs_clock()
        _install_sqs_lock()
        _install_parsed_event_paths()
        _install_cheap_sends()
        EventTemplateParser.DEFAULT_EVENT_INPUT_TEMPLATE = EVENT_TEMPLATE
        _installed = True


def _fast_unix_time(dt: datetime.datetime | None = None) -> float:
    return time.time() if dt is None else moto_utils.unix_time(dt)


def _fast_unix_time_millis(dt: datetime.datetime | None = None) -> float:
    return _fast_unix_time(dt) * 1000.0


def _install_fast_sqs_clock() -> None:
    """moto's SQS reads the clock through two datetimes per message per check, several
    scans per ReceiveMessage: 0.7 s a receive with 1,000 messages queued, which made the
    emulator, not the service, the limit of every flood test. Same values, epoch seconds."""
    setattr(sqs_models, "unix_time", _fast_unix_time)  # noqa: B010
    setattr(sqs_models, "unix_time_millis", _fast_unix_time_millis)  # noqa: B010


def _install_parsed_event_paths() -> None:
    """moto renders every event it delivers through a template whose eight JSONPath
    placeholders it compiles afresh each time (a PLY parser build each): 8.5 of the 11.7 s
    that 1,000 Spot warnings took through EventBridge, the whole storm's publishing. The
    paths are few and a compiled path is read-only, so each is compiled once."""
    compile_path = getattr(jsonpath_ext, "parse")  # noqa: B009
    setattr(jsonpath_ext, "parse", functools.lru_cache(maxsize=256)(compile_path))  # noqa: B010


_SENDING = threading.local()


def _install_cheap_sends() -> None:
    """SendMessage reads the queue's whole attribute map for one FIFO-only flag, and that map
    counts the queue's messages three times over: with 1,000 queued, 2 ms a send, and the
    storm's publishing O(n^2). A standard queue's send skips the map; every other reader
    (GetQueueAttributes) gets it whole."""
    queue = sqs_models.Queue
    whole = queue.attributes.fget  # type: ignore[attr-defined]

    def attributes(self: Any) -> dict[str, Any]:
        if getattr(_SENDING, "on", False) and not self.fifo_queue:
            return {}
        result: dict[str, Any] = whole(self)
        return result

    setattr(queue, "attributes", property(attributes))  # noqa: B010
    send = sqs_models.SQSBackend.send_message

    def send_message(*args: Any, **kwargs: Any) -> Any:
        _SENDING.on = True
        try:
            return send(*args, **kwargs)
        finally:
            _SENDING.on = False

    setattr(sqs_models.SQSBackend, "send_message", send_message)  # noqa: B010


SQS_LOCK = threading.RLock()
_SQS_WRITES = (
    "send_message",
    "send_message_batch",
    "delete_message",
    "delete_message_batch",
    "change_message_visibility",
    "change_message_visibility_batch",
    "purge_queue",
)


def _under_sqs_lock(method: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        with SQS_LOCK:
            return method(*args, **kwargs)

    return call


def _install_sqs_lock() -> None:
    """moto's SQS scans and edits a queue's message lists from every server thread at once:
    concurrent ReceiveMessage calls (a consumer with several long polls, as real ones have)
    raise 'Set changed size during iteration'. Each call runs under one lock; a long poll
    scans under it and waits outside it."""
    backend = sqs_models.SQSBackend
    for name in _SQS_WRITES:
        setattr(backend, name, _under_sqs_lock(getattr(backend, name)))
    scan = backend.receive_message

    def receive_message(
        self: Any,
        queue_name: str,
        count: int,
        wait_seconds_timeout: int,
        visibility_timeout: int,
        message_attribute_names: list[str] | None = None,
    ) -> Any:
        end = time.time() + wait_seconds_timeout
        while True:
            with SQS_LOCK:
                result = scan(
                    self, queue_name, count, 0, visibility_timeout, message_attribute_names
                )
            left = end - time.time()
            if result or left <= 0:
                return result
            self.get_queue(queue_name).wait_for_messages(min(1.0, left))
            time.sleep(0.01)  # visible but not deliverable (a FIFO group in flight): no spin

    setattr(backend, "receive_message", receive_message)  # noqa: B010


def _install_backend() -> None:
    # create_auto_scaling_group builds groups by this module-level name.
    setattr(asg_models, "FakeAutoScalingGroup", HookedGroup)  # noqa: B010
    autoscaling_backends.backend = HookedBackend
    for account_backends in autoscaling_backends.values():
        account_backends.backend = HookedBackend
        for region in list(account_backends.keys()):
            if not isinstance(account_backends[region], HookedBackend):
                del account_backends[region]  # made before install; rebuilt on next use


def _hooked(response: AutoScalingResponse) -> HookedBackend:
    backend = response.autoscaling_backend
    assert isinstance(backend, HookedBackend)
    return backend


def _put_lifecycle_hook(self: AutoScalingResponse) -> ActionResult:
    _hooked(self).create_lifecycle_hook(
        name=self._get_param("LifecycleHookName"),
        as_name=self._get_param("AutoScalingGroupName"),
        transition=self._get_param("LifecycleTransition"),
        timeout=self._get_int_param("HeartbeatTimeout"),
        result=self._get_param("DefaultResult"),
        target_arn=self._get_param("NotificationTargetARN") or None,
        role_arn=self._get_param("RoleARN"),
        metadata=self._get_param("NotificationMetadata"),
    )
    return EmptyResult()


def _complete_lifecycle_action(self: AutoScalingResponse) -> ActionResult:
    _hooked(self).complete_lifecycle_action(
        group_name=self._get_param("AutoScalingGroupName"),
        hook_name=self._get_param("LifecycleHookName"),
        result=self._get_param("LifecycleActionResult"),
        token=self._get_param("LifecycleActionToken"),
        instance_id=self._get_param("InstanceId"),
    )
    return EmptyResult()


def _record_lifecycle_action_heartbeat(self: AutoScalingResponse) -> ActionResult:
    _hooked(self).record_lifecycle_action_heartbeat(
        group_name=self._get_param("AutoScalingGroupName"),
        hook_name=self._get_param("LifecycleHookName"),
        token=self._get_param("LifecycleActionToken"),
        instance_id=self._get_param("InstanceId"),
    )
    return EmptyResult()


def _with_hook_specifications(
    create: Callable[[AutoScalingResponse], ActionResult],
) -> Callable[[AutoScalingResponse], ActionResult]:
    """CreateAutoScalingGroup's LifecycleHookSpecificationList: hooks exist before the first
    launch (so launch hooks apply to it); test notifications follow once the group exists."""

    def create_auto_scaling_group(self: AutoScalingResponse) -> ActionResult:
        backend = _hooked(self)
        group_name = self._get_param("AutoScalingGroupName")
        hooks = [
            backend.create_lifecycle_hook(
                name=spec["LifecycleHookName"],
                as_name=group_name,
                transition=spec["LifecycleTransition"],
                timeout=spec.get("HeartbeatTimeout"),
                result=spec.get("DefaultResult", "ABANDON"),
                target_arn=spec.get("NotificationTargetARN") or None,
                role_arn=spec.get("RoleARN"),
                metadata=spec.get("NotificationMetadata"),
                send_test=False,
            )
            for spec in self._get_param("LifecycleHookSpecificationList", [])
        ]
        result = create(self)
        for hook in hooks:
            if isinstance(hook, HookedLifecycleHook):
                backend.send_test_notification(hook)
        return result

    return create_auto_scaling_group


def _locked(call: Callable[[AutoScalingResponse], Any]) -> Callable[[AutoScalingResponse], Any]:
    # One Auto Scaling request at a time, and never during a ticker pass.
    def call_action(self: AutoScalingResponse) -> Any:
        with LOCK:
            return call(self)

    return call_action


def _install_responses() -> None:
    cls = AutoScalingResponse
    setattr(cls, "put_lifecycle_hook", _put_lifecycle_hook)  # noqa: B010
    setattr(cls, "complete_lifecycle_action", _complete_lifecycle_action)  # noqa: B010
    setattr(cls, "record_lifecycle_action_heartbeat", _record_lifecycle_action_heartbeat)  # noqa: B010
    create = _with_hook_specifications(cls.create_auto_scaling_group)
    setattr(cls, "create_auto_scaling_group", create)  # noqa: B010
    setattr(cls, "call_action", _locked(cls.call_action))  # noqa: B010


def _emitting(method: Callable[[Instance], Any], states: tuple[str, str]) -> Callable[..., Any]:
    """Wrap an Instance state change so it publishes EC2 state-change events, as EC2 does."""

    def wrapper(self: Instance) -> Any:
        before = self._state.name
        result = method(self)
        if before not in states:
            backend = self.ec2_backend
            for state in states:
                spec = state_change(backend.region_name, backend.account_id, self.id, state)
                emit.put_event(backend.account_id, backend.region_name, spec)
        return result

    return wrapper


def _install_ec2_state_events() -> None:
    setattr(Instance, "terminate", _emitting(Instance.terminate, ("shutting-down", "terminated")))  # noqa: B010
    setattr(Instance, "stop", _emitting(Instance.stop, ("stopping", "stopped")))  # noqa: B010


def _install_ecs() -> None:
    """ECS/ELBv2 additions (ecs.py); their requests share the lock with the ticker."""
    from moto.ecs.responses import EC2ContainerServiceResponse
    from moto.elbv2.responses import ELBV2Response

    ecs.install_ecs()
    ecs.install_elbv2()
    for cls in (EC2ContainerServiceResponse, ELBV2Response):
        setattr(cls, "call_action", _locked(cls.call_action))  # noqa: B010
