"""Classic ELB: the instances registered with a load balancer, and connection draining."""

from __future__ import annotations

from lifecycled.clients.aws.base import ServiceClient, batches
from lifecycled.errors import NotFoundError, PermanentError


class InvalidInstanceError(NotFoundError):
    """InvalidInstance (and InvalidInstanceID.*): not registered with that load balancer."""


class ClassicElbClient(ServiceClient):
    service = "elb"

    def classify(self, code: str, message: str) -> type[PermanentError] | None:
        return InvalidInstanceError if code.startswith("InvalidInstance") else None

    async def classic_instances(self, names: list[str]) -> dict[str, list[str]]:
        """Classic load balancer name -> the instance ids registered with it."""
        found: dict[str, list[str]] = {}
        for batch in batches(names, 20):
            reply = await self._call(
                "describe_load_balancers", LoadBalancerNames=batch, PageSize=20
            )
            for lb in reply.get("LoadBalancerDescriptions", []):
                found[str(lb["LoadBalancerName"])] = [
                    str(i["InstanceId"]) for i in lb.get("Instances", [])
                ]
        return found

    async def classic_instance_state(self, name: str, instance_id: str) -> str:
        """`InService` (also while its connections drain), `OutOfService`, `Unknown`."""
        try:
            reply = await self._call(
                "describe_instance_health",
                LoadBalancerName=name,
                Instances=[{"InstanceId": instance_id}],
            )
        except InvalidInstanceError:
            return "Unknown"  # not registered
        for state in reply.get("InstanceStates", []):
            return str(state.get("State", "Unknown"))
        return "Unknown"

    async def deregister_from_classic(self, name: str, instance_id: str) -> None:
        await self._call(
            "deregister_instances_from_load_balancer",
            LoadBalancerName=name,
            Instances=[{"InstanceId": instance_id}],
        )

    async def register_with_classic(self, name: str, instance_id: str) -> None:
        await self._call(
            "register_instances_with_load_balancer",
            LoadBalancerName=name,
            Instances=[{"InstanceId": instance_id}],
        )

    async def classic_draining_timeout(self, name: str) -> float:
        """Connection draining's timeout; 0 when draining is off (deregistration is at once)."""
        reply = await self._call("describe_load_balancer_attributes", LoadBalancerName=name)
        draining = reply.get("LoadBalancerAttributes", {}).get("ConnectionDraining", {})
        return float(draining.get("Timeout") or 300) if draining.get("Enabled") else 0.0
