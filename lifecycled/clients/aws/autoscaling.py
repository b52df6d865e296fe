"""Auto Scaling: lifecycle hooks (describe, heartbeat, complete); replace-ahead's group
reads, capacity and terminations."""

from __future__ import annotations

from dataclasses import dataclass

from lifecycled.clients.aws.base import ServiceClient
from lifecycled.errors import PermanentError
from lifecycled.model import HookInfo

TERMINATING_TRANSITION = "autoscaling:EC2_INSTANCE_TERMINATING"
# AWS says so only in words, under the catch-all ValidationError code.
ACTION_GONE_MARKERS = ("No active Lifecycle Action", "No Lifecycle Action found")


class HookActionGone(PermanentError):
    """The lifecycle action is no longer open: it timed out, or was completed already."""


@dataclass(frozen=True, slots=True)
class GroupInfo:
    name: str
    desired: int
    min_size: int
    max_size: int
    tags: dict[str, str]
    instances: dict[str, str]  # instance id -> lifecycle state


class AutoScalingClient(ServiceClient):
    service = "autoscaling"

    def classify(self, code: str, message: str) -> type[PermanentError] | None:
        if code == "ValidationError" and any(m in message for m in ACTION_GONE_MARKERS):
            return HookActionGone
        return None

    async def describe_hook(self, group: str, hook: str) -> HookInfo | None:
        reply = await self._call(
            "describe_lifecycle_hooks",
            AutoScalingGroupName=group,
            LifecycleHookNames=[hook],
        )
        for found in reply.get("LifecycleHooks", []):
            return HookInfo(
                heartbeat_timeout=int(found.get("HeartbeatTimeout", 3600)),
                global_timeout=int(found.get("GlobalTimeout", 172800)),
                default_result=str(found.get("DefaultResult", "ABANDON")),
            )
        return None

    async def record_heartbeat(self, group: str, hook: str, token: str, instance_id: str) -> None:
        """HookActionGone when the action is no longer open."""
        await self._call(
            "record_lifecycle_action_heartbeat",
            AutoScalingGroupName=group,
            LifecycleHookName=hook,
            InstanceId=instance_id,
            **_token(token),
        )

    async def complete_lifecycle_action(
        self, group: str, hook: str, token: str, instance_id: str, result: str
    ) -> None:
        """HookActionGone when the action is no longer open."""
        await self._call(
            "complete_lifecycle_action",
            AutoScalingGroupName=group,
            LifecycleHookName=hook,
            InstanceId=instance_id,
            LifecycleActionResult=result,
            **_token(token),
        )

    async def group_of(self, instance_id: str) -> str | None:
        """The Auto Scaling group the instance belongs to, or None."""
        reply = await self._call("describe_auto_scaling_instances", InstanceIds=[instance_id])
        for found in reply.get("AutoScalingInstances", []):
            return str(found["AutoScalingGroupName"])
        return None

    async def describe_group(self, group: str) -> GroupInfo | None:
        reply = await self._call("describe_auto_scaling_groups", AutoScalingGroupNames=[group])
        for found in reply.get("AutoScalingGroups", []):
            return GroupInfo(
                name=group,
                desired=int(found["DesiredCapacity"]),
                min_size=int(found["MinSize"]),
                max_size=int(found["MaxSize"]),
                tags={str(t["Key"]): str(t.get("Value", "")) for t in found.get("Tags", [])},
                instances={
                    str(i["InstanceId"]): str(i.get("LifecycleState", ""))
                    for i in found.get("Instances", [])
                },
            )
        return None

    async def set_desired_capacity(self, group: str, desired: int) -> None:
        await self._call(
            "set_desired_capacity",
            AutoScalingGroupName=group,
            DesiredCapacity=desired,
            HonorCooldown=False,
        )

    async def terminate_in_group(self, instance_id: str) -> None:
        """TerminateInstanceInAutoScalingGroup, the group's desired capacity decremented."""
        await self._call(
            "terminate_instance_in_auto_scaling_group",
            InstanceId=instance_id,
            ShouldDecrementDesiredCapacity=True,
        )

    async def groups_tagged(self, key: str, value: str | None) -> list[str]:
        """Names of the Auto Scaling groups carrying tag `key` (with `value` when given)."""
        name = f"tag:{key}" if value is not None else "tag-key"
        filters = [{"Name": name, "Values": [value if value is not None else key]}]
        names: list[str] = []
        token: str | None = None
        while True:
            extra = {"NextToken": token} if token else {}
            reply = await self._call("describe_auto_scaling_groups", Filters=filters, **extra)
            names += [str(g["AutoScalingGroupName"]) for g in reply.get("AutoScalingGroups", [])]
            token = reply.get("NextToken")
            if not token:
                return sorted(names)

    async def terminating_hook_infos(self, group: str) -> dict[str, HookInfo]:
        """The group's EC2_INSTANCE_TERMINATING hooks by name, with their timeouts."""
        reply = await self._call("describe_lifecycle_hooks", AutoScalingGroupName=group)
        return {
            str(found["LifecycleHookName"]): HookInfo(
                heartbeat_timeout=int(found.get("HeartbeatTimeout", 3600)),
                global_timeout=int(found.get("GlobalTimeout", 172800)),
                default_result=str(found.get("DefaultResult", "ABANDON")),
            )
            for found in reply.get("LifecycleHooks", [])
            if found.get("LifecycleTransition") == TERMINATING_TRANSITION
        }

    async def terminating_hooks(self, group: str) -> list[str]:
        """Names of the group's lifecycle hooks on EC2_INSTANCE_TERMINATING."""
        reply = await self._call("describe_lifecycle_hooks", AutoScalingGroupName=group)
        return sorted(
            str(found["LifecycleHookName"])
            for found in reply.get("LifecycleHooks", [])
            if found.get("LifecycleTransition") == TERMINATING_TRANSITION
        )


def _token(token: str) -> dict[str, str]:
    """An empty token (DaemonSet mode: IMDS has none) means "by instance id": leave it out."""
    return {"LifecycleActionToken": token} if token else {}
