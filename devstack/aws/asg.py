"""Auto Scaling lifecycle hooks on top of moto's autoscaling backend.

moto removes an instance from its group at once and knows no lifecycle actions. Here an
instance that leaves a group with an EC2_INSTANCE_TERMINATING hook waits in
Terminating:Wait until every hook's action is completed (or times out), and a launch with an
EC2_INSTANCE_LAUNCHING hook waits in Pending:Wait. Notifications go where AWS sends them:
EventBridge always, and the hook's NotificationTargetARN (SQS or SNS) when it has one.

All state changes happen under LOCK: request threads of the server and the stack's ticker
thread both call in here.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from moto.autoscaling import urls as autoscaling_urls
from moto.autoscaling.exceptions import ValidationError
from moto.autoscaling.models import (
    AutoScalingBackend,
    FakeAutoScalingGroup,
    InstanceState,
    LifecycleHook,
    TerminateInstanceActivity,
    autoscaling_backends,
)

from . import emit
from .payloads import (
    LAUNCHING,
    TERMINATING,
    LifecycleMessage,
    lifecycle_event,
    lifecycle_notification,
    sns_subject,
    test_notification,
)

LOCK = threading.RLock()

# AWS caps the total wait at 100 heartbeat timeouts or 48 hours, whichever is smaller.
MAX_GLOBAL_TIMEOUT = 172800

# Instances that count against desired capacity.
CAPACITY_STATES = frozenset({"Pending", "Pending:Wait", "Pending:Proceed", "InService"})


@dataclass
class LifecycleAction:
    token: str
    group_name: str
    hook_name: str
    instance_id: str
    transition: str
    heartbeat_timeout: int
    default_result: str
    expires: float  # time.monotonic() at which DefaultResult applies
    global_deadline: float

    def heartbeat(self, now: float) -> None:
        self.expires = min(now + self.heartbeat_timeout, self.global_deadline)


class HookedLifecycleHook(LifecycleHook):
    """moto's hook with the notification fields it hard-codes made real."""

    def __init__(
        self,
        name: str,
        as_name: str,
        transition: str | None,
        timeout: int | None,
        result: str | None,
        *,
        target_arn: str | None,
        role_arn: str | None,
        metadata: str | None,
    ) -> None:
        super().__init__(name, as_name, transition, timeout, result)
        # None leaves the field out of DescribeLifecycleHooks, as AWS does.
        self.notification_target_arn = target_arn  # type: ignore[assignment]
        self.role_arn = role_arn  # type: ignore[assignment]
        self.notification_metadata = metadata
        self.global_timeout = min(100 * self.heartbeat_timeout, MAX_GLOBAL_TIMEOUT)


class HookedGroup(FakeAutoScalingGroup):
    """Scale-in goes through lifecycle hooks; launches spread over subnets and honour hooks."""

    def set_desired_capacity(self, new_capacity: int | None) -> None:
        backend = self.autoscaling_backend
        if self.mixed_instances_policy or not isinstance(backend, HookedBackend):
            super().set_desired_capacity(new_capacity)
            return
        self.desired_capacity = self.min_size if new_capacity is None else new_capacity
        counted = [s for s in self.instance_states if s.lifecycle_state in CAPACITY_STATES]
        delta = (self.desired_capacity or 0) - len(counted)
        if delta > 0:
            self.replace_autoscaling_group_instances(delta, self.get_propagated_tags())
        for state in [s for s in counted if not s.protected_from_scale_in][: max(0, -delta)]:
            backend.leave_group(self, state)
        if self.name in backend.autoscaling_groups:
            backend.update_attached_elbs(self.name)
            backend.update_attached_target_groups(self.name)

    def replace_autoscaling_group_instances(
        self, count_needed: int, propagated_tags: dict[str, str]
    ) -> None:
        backend = self.autoscaling_backend
        for _ in range(count_needed):
            before = len(self.instance_states)
            with self._emptiest_subnet_first():
                super().replace_autoscaling_group_instances(1, dict(propagated_tags))
            if isinstance(backend, HookedBackend):
                for state in self.instance_states[before:]:
                    backend.join_group(self, state)

    @contextmanager
    def _emptiest_subnet_first(self) -> Iterator[None]:
        # moto launches every instance into the first subnet; AWS balances across zones.
        original = self.vpc_zone_identifier
        subnets = original.split(",") if original else []
        if len(subnets) > 1:
            used = Counter(s.instance.subnet_id for s in self.instance_states)
            first = min(subnets, key=lambda subnet: used[subnet])
            self.vpc_zone_identifier = ",".join([first, *(s for s in subnets if s != first)])
        try:
            yield
        finally:
            self.vpc_zone_identifier = original

    def is_spot(self) -> bool:
        if self.ec2_launch_template is None:
            return False
        data = self.ec2_launch_template.get_version(self.launch_template_version).data
        return bool(data.get("InstanceMarketOptions", {}).get("MarketType") == "spot")


class HookedBackend(AutoScalingBackend):
    def __init__(self, region_name: str, account_id: str) -> None:
        super().__init__(region_name, account_id)
        self.actions: dict[str, LifecycleAction] = {}
        # (time.monotonic(), instance id, lifecycle state): lets tests see passing states.
        self.transitions: list[tuple[float, str, str]] = []

    @property
    def _url_module(self) -> Any:
        # moto derives the URL module from the backend's module; ours lives elsewhere.
        return autoscaling_urls

    # --- hooks -----------------------------------------------------------------------

    def create_lifecycle_hook(
        self,
        name: str,
        as_name: str,
        transition: str,
        timeout: int | None,
        result: str,
        *,
        target_arn: str | None = None,
        role_arn: str | None = None,
        metadata: str | None = None,
        send_test: bool = True,
    ) -> LifecycleHook:
        with LOCK:
            if target_arn and not emit.target_exists(target_arn):
                raise ValidationError(
                    f"Unable to publish test message to notification target {target_arn} "
                    f"using IAM role {role_arn}. Please check your target and role "
                    "configuration and try to put lifecycle hook again."
                )
            hook = HookedLifecycleHook(
                name,
                as_name,
                transition,
                timeout,
                result,
                target_arn=target_arn,
                role_arn=role_arn,
                metadata=metadata,
            )
            self.lifecycle_hooks[f"{as_name}_{name}"] = hook
            if send_test:
                self.send_test_notification(hook)
            return hook

    def send_test_notification(self, hook: HookedLifecycleHook) -> None:
        group = self.autoscaling_groups.get(hook.auto_scaling_group_name)
        if not hook.notification_target_arn or group is None:
            return
        body = test_notification(self.account_id, group.name, group.arn, str(uuid.uuid4()))
        subject = f'Auto Scaling: test notification for group "{group.name}"'
        emit.notify(hook.notification_target_arn, body, subject)

    def hooks_for(self, group_name: str, transition: str) -> list[HookedLifecycleHook]:
        return [
            h
            for h in self.lifecycle_hooks.values()
            if isinstance(h, HookedLifecycleHook)
            and h.auto_scaling_group_name == group_name
            and h.lifecycle_transition == transition
        ]

    # --- instances entering and leaving ----------------------------------------------

    def join_group(self, group: HookedGroup, state: InstanceState) -> None:
        # moto's group launches omit the region, so names would say "ec2.internal" anywhere.
        state.instance.region_name = self.region_name
        if group.is_spot():
            state.instance.lifecycle = "spot"
        hooks = self.hooks_for(group.name, LAUNCHING)
        self._set_state(state, "Pending:Wait" if hooks else "InService")
        for hook in hooks:
            self._start_action(group, state, hook)

    def leave_group(self, group: FakeAutoScalingGroup, state: InstanceState) -> None:
        hooks = self.hooks_for(group.name, TERMINATING)
        if not hooks:
            self._terminate(group, state)
            return
        self._set_state(state, "Terminating:Wait")
        self.update_attached_elbs(group.name)
        for hook in hooks:
            self._start_action(group, state, hook)

    def terminate_instance(
        self, instance_id: str, should_decrement: bool
    ) -> TerminateInstanceActivity:
        with LOCK:
            state = self._find_state(instance_id)
            if state is None:
                raise ValidationError(
                    "Instance Id not found - No managed instance found for instance ID: "
                    f"{instance_id}"
                )
            group = state.auto_scaling_group
            original = group.desired_capacity
            if state.lifecycle_state not in CAPACITY_STATES:
                return TerminateInstanceActivity(state.instance, original)  # already leaving
            if should_decrement:
                _check_min_size(group)
                group.desired_capacity = original - 1
            activity = TerminateInstanceActivity(state.instance, original)
            self.leave_group(group, state)
            if not should_decrement:
                group.set_desired_capacity(group.desired_capacity)  # launches the replacement
            return activity

    def notify_terminate_instances(self, instance_ids: list[str]) -> None:
        # EC2 TerminateInstances on a group member: the machine is gone, whatever the hooks.
        with LOCK:
            for action in list(self.actions.values()):
                if action.instance_id in instance_ids:
                    del self.actions[action.token]
            for instance_id in instance_ids:
                if self._find_state(instance_id) is not None:
                    self.transitions.append((time.monotonic(), instance_id, "Terminated"))
            super().notify_terminate_instances(instance_ids)

    def delete_auto_scaling_group(self, group_name: str) -> None:
        with LOCK:
            for key, hook in list(self.lifecycle_hooks.items()):
                if hook.auto_scaling_group_name == group_name:
                    del self.lifecycle_hooks[key]
            for action in list(self.actions.values()):
                if action.group_name == group_name:
                    del self.actions[action.token]
            super().delete_auto_scaling_group(group_name)

    # --- lifecycle actions -------------------------------------------------------------

    def complete_lifecycle_action(
        self,
        group_name: str,
        hook_name: str,
        result: str,
        token: str | None,
        instance_id: str | None,
    ) -> None:
        with LOCK:
            if result not in ("CONTINUE", "ABANDON"):
                raise ValidationError(
                    f"Invalid LifecycleActionResult {result!r}: must be CONTINUE or ABANDON"
                )
            action = self._find_action(group_name, hook_name, token, instance_id)
            self._resolve(action, result)

    def record_lifecycle_action_heartbeat(
        self, group_name: str, hook_name: str, token: str | None, instance_id: str | None
    ) -> None:
        with LOCK:
            action = self._find_action(group_name, hook_name, token, instance_id)
            action.heartbeat(time.monotonic())

    def expire_actions(self, now: float) -> None:
        """Apply DefaultResult to every action whose heartbeat timeout has passed."""
        with LOCK:
            for action in list(self.actions.values()):
                if action.token in self.actions and now >= action.expires:
                    self._resolve(action, action.default_result)

    def _find_action(
        self, group_name: str, hook_name: str, token: str | None, instance_id: str | None
    ) -> LifecycleAction:
        def matches(a: LifecycleAction) -> bool:
            return a.group_name == group_name and a.hook_name == hook_name

        if token:
            action = self.actions.get(token)
            if action is None or not matches(action):
                raise ValidationError(f"No active Lifecycle Action found with token {token}")
            return action
        if instance_id:
            for action in self.actions.values():
                if matches(action) and action.instance_id == instance_id:
                    return action
            raise ValidationError(
                f"No active Lifecycle Action found with instance ID {instance_id}"
            )
        raise ValidationError("Either LifecycleActionToken or InstanceId must be specified.")

    def _start_action(
        self, group: FakeAutoScalingGroup, state: InstanceState, hook: HookedLifecycleHook
    ) -> None:
        now = time.monotonic()
        transition = str(hook.lifecycle_transition)
        action = LifecycleAction(
            token=str(uuid.uuid4()),
            group_name=group.name,
            hook_name=hook.name,
            instance_id=state.instance.id,
            transition=transition,
            heartbeat_timeout=hook.heartbeat_timeout,
            default_result=hook.default_result,
            expires=now + hook.heartbeat_timeout,
            global_deadline=now + hook.global_timeout,
        )
        self.actions[action.token] = action
        msg = LifecycleMessage(
            account=self.account_id,
            group_name=group.name,
            group_arn=group.arn,
            hook_name=hook.name,
            transition=transition,
            instance_id=action.instance_id,
            token=action.token,
            metadata=hook.notification_metadata,
        )
        emit.put_event(self.account_id, self.region_name, lifecycle_event(msg))
        if hook.notification_target_arn:
            body = lifecycle_notification(msg, request_id=str(uuid.uuid4()))
            subject = sns_subject(transition, action.instance_id)
            emit.notify(hook.notification_target_arn, body, subject)

    def _resolve(self, action: LifecycleAction, result: str) -> None:
        del self.actions[action.token]
        siblings = [
            a
            for a in self.actions.values()
            if a.instance_id == action.instance_id and a.transition == action.transition
        ]
        if result == "ABANDON":
            for sibling in siblings:  # ABANDON skips the remaining hooks
                del self.actions[sibling.token]
        elif siblings:
            return  # other hooks still hold the instance
        group = self.autoscaling_groups.get(action.group_name)
        state = self._find_state(action.instance_id)
        if group is None or state is None:
            return
        if action.transition == LAUNCHING and result == "CONTINUE":
            self._set_state(state, "InService")
            self.update_attached_elbs(group.name)
            self.update_attached_target_groups(group.name)
        else:
            self._terminate(group, state)

    # --- helpers -------------------------------------------------------------------------

    def _terminate(self, group: FakeAutoScalingGroup, state: InstanceState) -> None:
        waited = state.lifecycle_state == "Terminating:Wait"
        self._set_state(state, "Terminating:Proceed" if waited else "Terminating")
        group.instance_states = [s for s in group.instance_states if s is not state]
        self.ec2_backend.terminate_instances([state.instance.id])
        self.transitions.append((time.monotonic(), state.instance.id, "Terminated"))
        self.update_attached_elbs(group.name)

    def _set_state(self, state: InstanceState, lifecycle_state: str) -> None:
        state.lifecycle_state = lifecycle_state
        self.transitions.append((time.monotonic(), state.instance.id, lifecycle_state))

    def _find_state(self, instance_id: str) -> InstanceState | None:
        for group in self.autoscaling_groups.values():
            for state in group.instance_states:
                if state.instance.id == instance_id:
                    return state
        return None


def _check_min_size(group: Any) -> None:
    if group.min_size is not None and group.desired_capacity - 1 < group.min_size:
        raise ValidationError(
            f"Currently, desiredSize equals minSize ({group.min_size}). Terminating instance "
            "without replacement will violate group's min size constraint. Either set "
            "shouldDecrementDesiredCapacity flag to false or lower group's min size."
        )


def hooked_backends() -> list[HookedBackend]:
    try:
        backends = list(autoscaling_backends.iter_backends())
    except RuntimeError:  # a request thread created a backend meanwhile; next tick sees it
        return []
    return [b for _, _, b in backends if isinstance(b, HookedBackend)]


def expire_all(now: float) -> None:
    for backend in hooked_backends():
        backend.expire_actions(now)
