"""ECS: clusters, container instances (state, attributes), services, tasks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lifecycled.clients.aws.base import ServiceClient, batches, page
from lifecycled.errors import PermanentError, TemporaryError


class EcsClient(ServiceClient):
    service = "ecs"

    async def list_clusters(self) -> list[str]:
        found: list[str] = []
        token: str | None = None
        while True:
            reply = await self._call("list_clusters", **page(token))
            found.extend(reply.get("clusterArns", []))
            token = reply.get("nextToken")
            if not token:
                return found

    async def list_container_instances(self, cluster: str) -> list[str]:
        """Every container instance of a cluster except INACTIVE ones (AWS's default)."""
        found: list[str] = []
        token: str | None = None
        while True:
            reply = await self._call("list_container_instances", cluster=cluster, **page(token))
            found.extend(reply.get("containerInstanceArns", []))
            token = reply.get("nextToken")
            if not token:
                return found

    async def describe_container_instances(
        self, cluster: str, arns: list[str]
    ) -> list[ContainerInstanceInfo]:
        described: list[ContainerInstanceInfo] = []
        for batch in batches(arns, 100):
            reply = await self._call(
                "describe_container_instances", cluster=cluster, containerInstances=batch
            )
            described.extend(
                ContainerInstanceInfo.of(cluster, found)
                for found in reply.get("containerInstances", [])
            )
        return described

    async def set_container_instance_state(self, cluster: str, arn: str, status: str) -> None:
        reply = await self._call(
            "update_container_instances_state",
            cluster=cluster,
            containerInstances=[arn],
            status=status,
        )
        for failure in reply.get("failures", []):
            raise PermanentError(f"{status} refused for {arn}: {failure.get('reason')}")

    async def put_attributes(self, cluster: str, arn: str, values: dict[str, str]) -> None:
        attributes = [
            {"name": name, "value": value, "targetId": arn} for name, value in values.items()
        ]
        for batch in batches(attributes, 10):
            await self._call("put_attributes", cluster=cluster, attributes=batch)

    async def list_attribute_targets(self, cluster: str, name: str, value: str) -> list[str]:
        """Container instances of a cluster carrying attribute `name` = `value`."""
        found: list[str] = []
        token: str | None = None
        while True:
            reply = await self._call(
                "list_attributes",
                cluster=cluster,
                targetType="container-instance",
                attributeName=name,
                attributeValue=value,
                **page(token),
            )
            found.extend(str(a["targetId"]) for a in reply.get("attributes", []))
            token = reply.get("nextToken")
            if not token:
                return found

    async def list_task_arns(
        self,
        cluster: str,
        *,
        container_instance: str | None = None,
        started_by: str | None = None,
        family: str | None = None,
        desired_status: str = "RUNNING",
    ) -> list[str]:
        params: dict[str, Any] = {"cluster": cluster, "desiredStatus": desired_status}
        if container_instance:
            params["containerInstance"] = container_instance
        if started_by:
            params["startedBy"] = started_by
        if family:
            params["family"] = family
        found: list[str] = []
        token: str | None = None
        while True:
            reply = await self._call("list_tasks", **params, **page(token))
            found.extend(reply.get("taskArns", []))
            token = reply.get("nextToken")
            if not token:
                return found

    async def describe_tasks(self, cluster: str, arns: list[str]) -> list[EcsTask]:
        described: list[EcsTask] = []
        for batch in batches(arns, 100):
            reply = await self._call(
                "describe_tasks", cluster=cluster, tasks=batch, include=["TAGS"]
            )
            described.extend(EcsTask.of(found) for found in reply.get("tasks", []))
        return described

    async def describe_services(self, cluster: str, names: list[str]) -> list[EcsService]:
        described: list[EcsService] = []
        for batch in batches(names, 10):
            reply = await self._call("describe_services", cluster=cluster, services=batch)
            described.extend(EcsService.of(found) for found in reply.get("services", []))
        return described

    async def describe_task_definition(self, arn: str) -> TaskDefinitionInfo:
        reply = await self._call("describe_task_definition", taskDefinition=arn, include=["TAGS"])
        return TaskDefinitionInfo.of(reply["taskDefinition"], reply.get("tags", []))

    async def stop_task(self, cluster: str, arn: str, reason: str) -> None:
        await self._call("stop_task", cluster=cluster, task=arn, reason=reason[:255])

    async def run_task(self, cluster: str, spec: dict[str, Any]) -> list[str]:
        """RunTask with `spec` (taskDefinition, overrides, group, ...); the new task ARNs."""
        reply = await self._call("run_task", cluster=cluster, **spec)
        failures = reply.get("failures", [])
        if failures and not reply.get("tasks"):
            raise TemporaryError(f"RunTask placed nothing: {failures[0].get('reason')}")
        return [str(t["taskArn"]) for t in reply.get("tasks", [])]

    async def tag_resource(self, arn: str, tags: dict[str, str]) -> None:
        await self._call(
            "tag_resource",
            resourceArn=arn,
            tags=[{"key": k, "value": v} for k, v in tags.items()],
        )


def _tags(raw: list[dict[str, Any]]) -> dict[str, str]:
    return {str(t.get("key")): str(t.get("value", "")) for t in raw if "key" in t}


@dataclass(frozen=True, slots=True)
class ContainerInstanceInfo:
    cluster: str
    arn: str
    ec2_instance_id: str
    status: str
    attributes: dict[str, str]

    @classmethod
    def of(cls, cluster: str, raw: dict[str, Any]) -> ContainerInstanceInfo:
        return cls(
            cluster=cluster,
            arn=str(raw["containerInstanceArn"]),
            ec2_instance_id=str(raw.get("ec2InstanceId", "")),
            status=str(raw.get("status", "")),
            attributes={
                str(a["name"]): str(a.get("value", ""))
                for a in raw.get("attributes", [])
                if "name" in a
            },
        )


@dataclass(frozen=True, slots=True)
class PortBinding:
    container: str
    container_port: int
    host_port: int


@dataclass(frozen=True, slots=True)
class EcsTask:
    arn: str
    cluster_arn: str
    container_instance_arn: str
    task_definition_arn: str
    group: str
    started_by: str
    last_status: str
    desired_status: str
    launch_type: str
    overrides: dict[str, Any]
    tags: dict[str, str]
    ip: str | None  # awsvpc: the task's ENI address
    subnet: str | None
    bindings: tuple[PortBinding, ...]  # bridge/host: host ports

    @property
    def service(self) -> str | None:
        """The service that started this task (group `service:<name>`), or None (RunTask)."""
        return self.group.removeprefix("service:") if self.group.startswith("service:") else None

    @classmethod
    def of(cls, raw: dict[str, Any]) -> EcsTask:
        details: dict[str, str] = {}
        for attachment in raw.get("attachments", []):
            if attachment.get("type") == "ElasticNetworkInterface":
                details = {str(d.get("name")): str(d.get("value")) for d in attachment["details"]}
        bindings = tuple(
            PortBinding(
                str(container.get("name", "")),
                int(binding.get("containerPort") or 0),
                int(binding.get("hostPort") or 0),
            )
            for container in raw.get("containers", [])
            for binding in container.get("networkBindings", [])
        )
        return cls(
            arn=str(raw["taskArn"]),
            cluster_arn=str(raw.get("clusterArn", "")),
            container_instance_arn=str(raw.get("containerInstanceArn", "")),
            task_definition_arn=str(raw.get("taskDefinitionArn", "")),
            group=str(raw.get("group", "")),
            started_by=str(raw.get("startedBy", "")),
            last_status=str(raw.get("lastStatus", "")),
            desired_status=str(raw.get("desiredStatus", "")),
            launch_type=str(raw.get("launchType", "")),
            overrides=dict(raw.get("overrides") or {}),
            tags=_tags(raw.get("tags", [])),
            ip=details.get("privateIPv4Address"),
            subnet=details.get("subnetId"),
            bindings=bindings,
        )


@dataclass(frozen=True, slots=True)
class ServiceLoadBalancer:
    target_group: str
    container: str
    container_port: int


@dataclass(frozen=True, slots=True)
class EcsService:
    name: str
    scheduling_strategy: str  # REPLICA | DAEMON
    load_balancers: tuple[ServiceLoadBalancer, ...]

    @classmethod
    def of(cls, raw: dict[str, Any]) -> EcsService:
        return cls(
            name=str(raw.get("serviceName", "")),
            scheduling_strategy=str(raw.get("schedulingStrategy", "REPLICA")),
            load_balancers=tuple(
                ServiceLoadBalancer(
                    str(lb["targetGroupArn"]),
                    str(lb.get("containerName", "")),
                    int(lb.get("containerPort") or 0),
                )
                for lb in raw.get("loadBalancers", [])
                if lb.get("targetGroupArn")
            ),
        )


@dataclass(frozen=True, slots=True)
class TaskDefinitionInfo:
    arn: str
    network_mode: str
    stop_timeout: float  # the longest container stopTimeout (the agent's default: 30 s)
    tags: dict[str, str]

    @classmethod
    def of(cls, raw: dict[str, Any], tags: list[dict[str, Any]]) -> TaskDefinitionInfo:
        timeouts = [
            float(c["stopTimeout"])
            for c in raw.get("containerDefinitions", [])
            if "stopTimeout" in c
        ]
        return cls(
            arn=str(raw.get("taskDefinitionArn", "")),
            network_mode=str(raw.get("networkMode", "bridge")),
            stop_timeout=max(timeouts, default=30.0),
            tags=_tags(tags),
        )
