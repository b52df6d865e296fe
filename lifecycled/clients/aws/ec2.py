"""EC2: an instance's DNS name, state and tags."""

from __future__ import annotations

from dataclasses import dataclass

from lifecycled.clients.aws.base import ServiceClient
from lifecycled.errors import NotFoundError


@dataclass(frozen=True, slots=True)
class InstanceInfo:
    instance_id: str
    private_dns_name: str | None
    state: str | None
    tags: dict[str, str]


class Ec2Client(ServiceClient):
    service = "ec2"

    async def can_describe(self) -> None:
        """The cheapest DescribeInstances (`lifecycled check`): raises when not allowed."""
        await self._call("describe_instances", MaxResults=5)

    async def describe_instance(self, instance_id: str) -> InstanceInfo | None:
        try:
            found = await self.describe_instances([instance_id])
        except NotFoundError:
            return None
        return found.get(instance_id)

    async def describe_instances(self, instance_ids: list[str]) -> dict[str, InstanceInfo]:
        """Many instances in one call (a storm's ownership checks); NotFoundError when any
        of them is unknown (EC2 then answers for none)."""
        reply = await self._call("describe_instances", InstanceIds=list(instance_ids))
        found: dict[str, InstanceInfo] = {}
        for reservation in reply.get("Reservations", []):
            for inst in reservation.get("Instances", []):
                found[inst["InstanceId"]] = InstanceInfo(
                    instance_id=inst["InstanceId"],
                    private_dns_name=inst.get("PrivateDnsName") or None,
                    state=inst.get("State", {}).get("Name"),
                    tags={t["Key"]: t["Value"] for t in inst.get("Tags", [])},
                )
        return found
