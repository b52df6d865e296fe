"""The only module that talks to AWS: aiobotocore clients behind small typed methods.

Endpoints, credentials and region follow botocore's own chain (AWS_ENDPOINT_URL,
AWS_ENDPOINT_URL_<SERVICE>, AWS_REGION, ...). botocore's "standard" retry mode retries
throttling and 5xx with backoff; what is left over becomes our Temporary/PermanentError.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, TypeVar

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from lifecycled.errors import NotFoundError, PermanentError, TemporaryError
from lifecycled.observe import Metrics
from lifecycled.settings import Settings

T = TypeVar("T")

TEMPORARY_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "ServiceUnavailable",
        "InternalFailure",
        "InternalError",
        "RequestTimeout",
        "RequestTimeoutException",
        "SlowDown",
    }
)
NOT_FOUND_CODES = frozenset(
    {
        "InvalidInstanceID.NotFound",
        "AWS.SimpleQueueService.NonExistentQueue",
        "TargetGroupNotFound",
        "LoadBalancerNotFound",
    }
)
TERMINATING_TRANSITION = "autoscaling:EC2_INSTANCE_TERMINATING"
# How many times a message was passed on to other clusters' handlers (a shared queue).
FORWARDS_ATTRIBUTE = "lifecycled-forwards"


@dataclass(frozen=True, slots=True)
class QueueMessage:
    message_id: str
    receipt_handle: str
    body: str
    receive_count: int
    forwards: int = 0  # FORWARDS_ATTRIBUTE


@dataclass(frozen=True, slots=True)
class InstanceInfo:
    instance_id: str
    private_dns_name: str | None
    state: str | None
    tags: dict[str, str]


@dataclass(frozen=True, slots=True)
class HookInfo:
    heartbeat_timeout: int
    global_timeout: int
    default_result: str


def translate(exc: Exception) -> Exception:
    """botocore's errors -> ours. Unknown client errors are permanent: retrying won't fix them."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        message = f"{code}: {error.get('Message', '')}"
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in TEMPORARY_CODES or status >= 500:
            return TemporaryError(message)
        if code in NOT_FOUND_CODES:
            return NotFoundError(message)
        return PermanentError(message)
    if isinstance(exc, BotoCoreError):
        return TemporaryError(f"{type(exc).__name__}: {exc}")
    return exc


class AwsClients:
    """One client per service, opened for the life of the service."""

    def __init__(self, clients: dict[str, Any], metrics: Metrics) -> None:
        self._clients = clients
        self._metrics = metrics

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls, settings: Settings, metrics: Metrics, services: tuple[str, ...]
    ) -> AsyncIterator[AwsClients]:
        session = get_session()
        region = region_of(settings)
        base = AioConfig(
            connect_timeout=settings.api_timeout_seconds,
            read_timeout=settings.api_timeout_seconds,
            retries={"mode": "standard", "max_attempts": 4},
        )
        # Long polls hold the connection for up to WaitTimeSeconds.
        sqs = base.merge(
            AioConfig(read_timeout=settings.sqs_wait_seconds + settings.api_timeout_seconds)
        )
        async with contextlib.AsyncExitStack() as stack:
            clients: dict[str, Any] = {}
            for service in services:
                config = sqs if service == "sqs" else base
                clients[service] = await stack.enter_async_context(
                    session.create_client(  # type: ignore[call-overload]
                        service, region_name=region, config=config
                    )
                )
            yield cls(clients, metrics)

    async def _call(self, service: str, operation: str, **params: Any) -> dict[str, Any]:
        method = getattr(self._clients[service], operation)
        with self._metrics.api_call(service, operation):
            try:
                result: dict[str, Any] = await method(**params)
            except (ClientError, BotoCoreError) as exc:
                raise translate(exc) from exc
        return result

    # --- SQS -------------------------------------------------------------------------------

    async def receive(
        self, queue_url: str, *, max_messages: int, wait_seconds: int, visibility_seconds: int
    ) -> list[QueueMessage]:
        reply = await self._call(
            "sqs",
            "receive_message",
            QueueUrl=queue_url,
            MaxNumberOfMessages=max_messages,
            WaitTimeSeconds=wait_seconds,
            VisibilityTimeout=visibility_seconds,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
            MessageAttributeNames=[FORWARDS_ATTRIBUTE],
        )
        return [
            QueueMessage(
                message_id=m["MessageId"],
                receipt_handle=m["ReceiptHandle"],
                body=m.get("Body", ""),
                receive_count=int(m.get("Attributes", {}).get("ApproximateReceiveCount", 1)),
                forwards=_forwards(m),
            )
            for m in reply.get("Messages", [])
        ]

    async def delete_message(self, queue_url: str, receipt_handle: str) -> None:
        await self._call("sqs", "delete_message", QueueUrl=queue_url, ReceiptHandle=receipt_handle)

    async def change_visibility(self, queue_url: str, receipt_handle: str, seconds: int) -> None:
        await self._call(
            "sqs",
            "change_message_visibility",
            QueueUrl=queue_url,
            ReceiptHandle=receipt_handle,
            VisibilityTimeout=seconds,
        )

    async def has_dead_letter_queue(self, queue_url: str) -> bool:
        return await self.max_receive_count(queue_url) is not None

    async def max_receive_count(self, queue_url: str) -> int | None:
        """The redrive policy's maxReceiveCount; None when the queue has no dead-letter queue."""
        reply = await self._call(
            "sqs", "get_queue_attributes", QueueUrl=queue_url, AttributeNames=["RedrivePolicy"]
        )
        policy = reply.get("Attributes", {}).get("RedrivePolicy")
        if policy is None:
            return None
        try:
            return int(json.loads(policy).get("maxReceiveCount", 1))
        except (ValueError, TypeError, AttributeError):
            return 1  # unreadable: assume the strictest policy

    async def forward_message(
        self, queue_url: str, body: str, *, forwards: int, delay_seconds: int
    ) -> None:
        """A fresh copy of a message (receive count 0) for another consumer of the queue."""
        await self._call(
            "sqs",
            "send_message",
            QueueUrl=queue_url,
            MessageBody=body,
            DelaySeconds=min(delay_seconds, 900),
            MessageAttributes={
                FORWARDS_ATTRIBUTE: {"DataType": "Number", "StringValue": str(forwards)}
            },
        )

    async def send_message(
        self, queue_url: str, body: str, *, deduplication_id: str, group_id: str
    ) -> None:
        params: dict[str, Any] = {"QueueUrl": queue_url, "MessageBody": body}
        if queue_url.endswith(".fifo"):
            params["MessageDeduplicationId"] = deduplication_id[:128]
            params["MessageGroupId"] = group_id[:128]
        else:  # standard queues cannot deduplicate: the id travels for the consumer to check
            params["MessageAttributes"] = {
                "DeduplicationId": {"DataType": "String", "StringValue": deduplication_id}
            }
        await self._call("sqs", "send_message", **params)

    # --- EC2 -------------------------------------------------------------------------------

    async def describe_instance(self, instance_id: str) -> InstanceInfo | None:
        try:
            reply = await self._call("ec2", "describe_instances", InstanceIds=[instance_id])
        except NotFoundError:
            return None
        for reservation in reply.get("Reservations", []):
            for inst in reservation.get("Instances", []):
                return InstanceInfo(
                    instance_id=inst["InstanceId"],
                    private_dns_name=inst.get("PrivateDnsName") or None,
                    state=inst.get("State", {}).get("Name"),
                    tags={t["Key"]: t["Value"] for t in inst.get("Tags", [])},
                )
        return None

    # --- Auto Scaling ----------------------------------------------------------------------

    async def describe_hook(self, group: str, hook: str) -> HookInfo | None:
        reply = await self._call(
            "autoscaling",
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
        await self._call(
            "autoscaling",
            "record_lifecycle_action_heartbeat",
            AutoScalingGroupName=group,
            LifecycleHookName=hook,
            InstanceId=instance_id,
            **_token(token),
        )

    async def complete_lifecycle_action(
        self, group: str, hook: str, token: str, instance_id: str, result: str
    ) -> None:
        await self._call(
            "autoscaling",
            "complete_lifecycle_action",
            AutoScalingGroupName=group,
            LifecycleHookName=hook,
            InstanceId=instance_id,
            LifecycleActionResult=result,
            **_token(token),
        )

    async def terminating_hooks(self, group: str) -> list[str]:
        """Names of the group's lifecycle hooks on EC2_INSTANCE_TERMINATING."""
        reply = await self._call(
            "autoscaling", "describe_lifecycle_hooks", AutoScalingGroupName=group
        )
        return sorted(
            str(found["LifecycleHookName"])
            for found in reply.get("LifecycleHooks", [])
            if found.get("LifecycleTransition") == TERMINATING_TRANSITION
        )

    # --- ECS -------------------------------------------------------------------------------

    async def list_clusters(self) -> list[str]:
        found: list[str] = []
        token: str | None = None
        while True:
            reply = await self._call("ecs", "list_clusters", **_page(token))
            found.extend(reply.get("clusterArns", []))
            token = reply.get("nextToken")
            if not token:
                return found

    async def list_container_instances(self, cluster: str) -> list[str]:
        """Every container instance of a cluster except INACTIVE ones (AWS's default)."""
        found: list[str] = []
        token: str | None = None
        while True:
            reply = await self._call(
                "ecs", "list_container_instances", cluster=cluster, **_page(token)
            )
            found.extend(reply.get("containerInstanceArns", []))
            token = reply.get("nextToken")
            if not token:
                return found

    async def describe_container_instances(
        self, cluster: str, arns: list[str]
    ) -> list[ContainerInstanceInfo]:
        described: list[ContainerInstanceInfo] = []
        for batch in _batches(arns, 100):
            reply = await self._call(
                "ecs", "describe_container_instances", cluster=cluster, containerInstances=batch
            )
            described.extend(
                ContainerInstanceInfo.of(cluster, found)
                for found in reply.get("containerInstances", [])
            )
        return described

    async def set_container_instance_state(self, cluster: str, arn: str, status: str) -> None:
        reply = await self._call(
            "ecs",
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
        for batch in _batches(attributes, 10):
            await self._call("ecs", "put_attributes", cluster=cluster, attributes=batch)

    async def list_attribute_targets(self, cluster: str, name: str, value: str) -> list[str]:
        """Container instances of a cluster carrying attribute `name` = `value`."""
        found: list[str] = []
        token: str | None = None
        while True:
            reply = await self._call(
                "ecs",
                "list_attributes",
                cluster=cluster,
                targetType="container-instance",
                attributeName=name,
                attributeValue=value,
                **_page(token),
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
            reply = await self._call("ecs", "list_tasks", **params, **_page(token))
            found.extend(reply.get("taskArns", []))
            token = reply.get("nextToken")
            if not token:
                return found

    async def describe_tasks(self, cluster: str, arns: list[str]) -> list[EcsTask]:
        described: list[EcsTask] = []
        for batch in _batches(arns, 100):
            reply = await self._call(
                "ecs", "describe_tasks", cluster=cluster, tasks=batch, include=["TAGS"]
            )
            described.extend(EcsTask.of(found) for found in reply.get("tasks", []))
        return described

    async def describe_services(self, cluster: str, names: list[str]) -> list[EcsService]:
        described: list[EcsService] = []
        for batch in _batches(names, 10):
            reply = await self._call("ecs", "describe_services", cluster=cluster, services=batch)
            described.extend(EcsService.of(found) for found in reply.get("services", []))
        return described

    async def describe_task_definition(self, arn: str) -> TaskDefinitionInfo:
        reply = await self._call(
            "ecs", "describe_task_definition", taskDefinition=arn, include=["TAGS"]
        )
        return TaskDefinitionInfo.of(reply["taskDefinition"], reply.get("tags", []))

    async def stop_task(self, cluster: str, arn: str, reason: str) -> None:
        await self._call("ecs", "stop_task", cluster=cluster, task=arn, reason=reason[:255])

    async def run_task(self, cluster: str, spec: dict[str, Any]) -> list[str]:
        """RunTask with `spec` (taskDefinition, overrides, group, ...); the new task ARNs."""
        reply = await self._call("ecs", "run_task", cluster=cluster, **spec)
        failures = reply.get("failures", [])
        if failures and not reply.get("tasks"):
            raise TemporaryError(f"RunTask placed nothing: {failures[0].get('reason')}")
        return [str(t["taskArn"]) for t in reply.get("tasks", [])]

    async def tag_resource(self, arn: str, tags: dict[str, str]) -> None:
        await self._call(
            "ecs",
            "tag_resource",
            resourceArn=arn,
            tags=[{"key": k, "value": v} for k, v in tags.items()],
        )

    # --- ELBv2 -----------------------------------------------------------------------------

    async def deregister_targets(self, target_group: str, targets: list[LbTarget]) -> None:
        await self._call(
            "elbv2",
            "deregister_targets",
            TargetGroupArn=target_group,
            Targets=[t.as_param() for t in targets],
        )

    async def register_targets(self, target_group: str, targets: list[LbTarget]) -> None:
        await self._call(
            "elbv2",
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
        reply = await self._call("elbv2", "describe_target_health", **params)
        states: dict[LbTarget, str] = {}
        for found in reply.get("TargetHealthDescriptions", []):
            target = found.get("Target", {})
            key = LbTarget(str(target.get("Id")), int(target.get("Port") or 0))
            states[key] = str(found.get("TargetHealth", {}).get("State", "unused"))
        return states

    async def deregistration_delay(self, target_group: str) -> float:
        reply = await self._call(
            "elbv2", "describe_target_group_attributes", TargetGroupArn=target_group
        )
        for attribute in reply.get("Attributes", []):
            if attribute.get("Key") == "deregistration_delay.timeout_seconds":
                return float(attribute.get("Value") or 0)
        return 300.0  # AWS's default

    async def describe_target_groups(self, arns: list[str] | None = None) -> list[TargetGroupInfo]:
        """The named target groups, or every target group in the region."""
        found: list[TargetGroupInfo] = []
        for batch in _batches(arns, 20) if arns else [None]:
            marker: str | None = None
            while True:
                params: dict[str, Any] = {"TargetGroupArns": batch} if batch else {}
                if marker:
                    params["Marker"] = marker
                reply = await self._call("elbv2", "describe_target_groups", **params)
                found.extend(TargetGroupInfo.of(g) for g in reply.get("TargetGroups", []))
                marker = reply.get("NextMarker")
                if not marker:
                    break
        return found

    async def target_group_tags(self, arns: list[str]) -> dict[str, dict[str, str]]:
        """ARN -> tags (DescribeTags takes 20 resources a call)."""
        tags: dict[str, dict[str, str]] = {}
        for batch in _batches(arns, 20):
            reply = await self._call("elbv2", "describe_tags", ResourceArns=batch)
            for described in reply.get("TagDescriptions", []):
                tags[str(described["ResourceArn"])] = {
                    str(t["Key"]): str(t.get("Value", "")) for t in described.get("Tags", [])
                }
        return tags

    # --- Classic ELB -----------------------------------------------------------------------

    async def classic_instances(self, names: list[str]) -> dict[str, list[str]]:
        """Classic load balancer name -> the instance ids registered with it."""
        found: dict[str, list[str]] = {}
        for batch in _batches(names, 20):
            reply = await self._call(
                "elb", "describe_load_balancers", LoadBalancerNames=batch, PageSize=20
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
                "elb",
                "describe_instance_health",
                LoadBalancerName=name,
                Instances=[{"InstanceId": instance_id}],
            )
        except PermanentError as exc:
            if "InvalidInstance" in str(exc):
                return "Unknown"  # not registered
            raise
        for state in reply.get("InstanceStates", []):
            return str(state.get("State", "Unknown"))
        return "Unknown"

    async def deregister_from_classic(self, name: str, instance_id: str) -> None:
        await self._call(
            "elb",
            "deregister_instances_from_load_balancer",
            LoadBalancerName=name,
            Instances=[{"InstanceId": instance_id}],
        )

    async def register_with_classic(self, name: str, instance_id: str) -> None:
        await self._call(
            "elb",
            "register_instances_with_load_balancer",
            LoadBalancerName=name,
            Instances=[{"InstanceId": instance_id}],
        )

    async def classic_draining_timeout(self, name: str) -> float:
        """Connection draining's timeout; 0 when draining is off (deregistration is at once)."""
        reply = await self._call("elb", "describe_load_balancer_attributes", LoadBalancerName=name)
        draining = reply.get("LoadBalancerAttributes", {}).get("ConnectionDraining", {})
        return float(draining.get("Timeout") or 300) if draining.get("Enabled") else 0.0


def _forwards(message: dict[str, Any]) -> int:
    value = message.get("MessageAttributes", {}).get(FORWARDS_ATTRIBUTE, {}).get("StringValue")
    try:
        return max(0, int(value)) if value is not None else 0
    except ValueError:
        return 0


def region_of(settings: Settings) -> str | None:
    """LIFECYCLED_REGION, else AWS_REGION (what the other SDKs and EKS's webhooks set, and
    botocore alone ignores), else None: botocore's chain (AWS_DEFAULT_REGION, config file)."""
    return settings.region or os.environ.get("AWS_REGION") or None


def region_known(settings: Settings) -> bool:
    return bool(region_of(settings) or get_session().get_config_variable("region"))


def _page(token: str | None) -> dict[str, str]:
    return {"nextToken": token} if token else {}


def _batches(items: list[T], size: int) -> list[list[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


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


def _token(token: str) -> dict[str, str]:
    """An empty token (DaemonSet mode: IMDS has none) means "by instance id": leave it out."""
    return {"LifecycleActionToken": token} if token else {}
