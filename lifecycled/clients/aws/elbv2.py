"""ELBv2 (application and network load balancers): target groups and their targets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lifecycled.clients.aws.base import ServiceClient, batches
from lifecycled.errors import PermanentError


class InvalidTargetError(PermanentError):
    """InvalidTarget: the target is not registered with the group (any more), or not valid."""


@dataclass(frozen=True, slots=True)
class LbTarget:
    id: str  # instance id (bridge/host) or IP address (awsvpc)
    port: int

    def as_param(self) -> dict[str, Any]:
        return {"Id": self.id, "Port": self.port}


@dataclass(frozen=True, slots=True)
class TargetGroupInfo:
    arn: str
    target_type: str  # instance | ip | lambda | alb

    @classmethod
    def of(cls, raw: dict[str, Any]) -> TargetGroupInfo:
        return cls(arn=str(raw["TargetGroupArn"]), target_type=str(raw.get("TargetType", "")))


class Elbv2Client(ServiceClient):
    service = "elbv2"

    def classify(self, code: str, message: str) -> type[PermanentError] | None:
        return InvalidTargetError if code == "InvalidTarget" else None

    async def deregister_targets(self, target_group: str, targets: list[LbTarget]) -> None:
        """InvalidTargetError when a target is not registered."""
        await self._call(
            "deregister_targets",
            TargetGroupArn=target_group,
            Targets=[t.as_param() for t in targets],
        )

    async def register_targets(self, target_group: str, targets: list[LbTarget]) -> None:
        await self._call(
            "register_targets",
            TargetGroupArn=target_group,
            Targets=[t.as_param() for t in targets],
        )

    async def target_states(
        self, target_group: str, targets: list[LbTarget] | None = None
    ) -> dict[LbTarget, str]:
        """`healthy`, `draining`, `unused`, ... per target (`unused`: not registered).
        Without `targets`: every registered target of the group, draining ones included."""
        params: dict[str, Any] = {"TargetGroupArn": target_group}
        if targets is not None:
            params["Targets"] = [t.as_param() for t in targets]
        reply = await self._call("describe_target_health", **params)
        states: dict[LbTarget, str] = {}
        for found in reply.get("TargetHealthDescriptions", []):
            target = found.get("Target", {})
            key = LbTarget(str(target.get("Id")), int(target.get("Port") or 0))
            states[key] = str(found.get("TargetHealth", {}).get("State", "unused"))
        return states

    async def deregistration_delay(self, target_group: str) -> float:
        reply = await self._call("describe_target_group_attributes", TargetGroupArn=target_group)
        for attribute in reply.get("Attributes", []):
            if attribute.get("Key") == "deregistration_delay.timeout_seconds":
                return float(attribute.get("Value") or 0)
        return 300.0  # AWS's default

    async def describe_target_groups(self, arns: list[str] | None = None) -> list[TargetGroupInfo]:
        """The named target groups, or every target group in the region."""
        found: list[TargetGroupInfo] = []
        for batch in batches(arns, 20) if arns else [None]:
            marker: str | None = None
            while True:
                params: dict[str, Any] = {"TargetGroupArns": batch} if batch else {}
                if marker:
                    params["Marker"] = marker
                reply = await self._call("describe_target_groups", **params)
                found.extend(TargetGroupInfo.of(g) for g in reply.get("TargetGroups", []))
                marker = reply.get("NextMarker")
                if not marker:
                    break
        return found

    async def target_group_tags(self, arns: list[str]) -> dict[str, dict[str, str]]:
        """ARN -> tags (DescribeTags takes 20 resources a call)."""
        tags: dict[str, dict[str, str]] = {}
        for batch in batches(arns, 20):
            reply = await self._call("describe_tags", ResourceArns=batch)
            for described in reply.get("TagDescriptions", []):
                tags[str(described["ResourceArn"])] = {
                    str(t["Key"]): str(t.get("Value", "")) for t in described.get("Tags", [])
                }
        return tags
