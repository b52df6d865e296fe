"""AwsStack's ECS helpers: clusters of container instances, services behind target groups,
standalone tasks, and views of what the scheduler and the load balancer did."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from . import ecs
from .asg import LOCK

DEFAULT_IMAGE = "public.ecr.aws/docker/library/busybox:latest"


@dataclass(frozen=True)
class EcsCluster:
    name: str
    arn: str
    container_instances: dict[str, str] = field(default_factory=dict)  # instance id -> ARN


class EcsHelpers:
    """Mixed into AwsStack (which provides boto3_client, region, account, _ensure_subnets)."""

    region: str
    account: str

    def boto3_client(self, service: str) -> Any:
        raise NotImplementedError

    def _ensure_subnets(self) -> list[str]:
        raise NotImplementedError

    # --- configuration --------------------------------------------------------------------

    def configure_ecs(
        self, *, stop_seconds: float | None = None, healthy_after_seconds: float | None = None
    ) -> None:
        """How long StopTask takes (STOPPING -> STOPPED), and how long a new service task takes
        to pass its health checks before ECS stops the task it replaces."""
        if stop_seconds is not None:
            ecs.config.stop_seconds = stop_seconds
        if healthy_after_seconds is not None:
            ecs.config.healthy_after_seconds = healthy_after_seconds

    def ecs_tick(self) -> None:
        """One scheduler pass now (the ticker runs one every 50 ms anyway)."""
        import time

        with LOCK:
            ecs.tick_all(time.monotonic())

    # --- set-up ---------------------------------------------------------------------------

    def create_ecs_cluster(self, name: str, instance_ids: list[str]) -> EcsCluster:
        client = self.boto3_client("ecs")
        arn = client.create_cluster(clusterName=name)["cluster"]["clusterArn"]
        cluster = EcsCluster(name, arn)
        for instance_id in instance_ids:
            cluster.container_instances[instance_id] = self.register_container_instance(
                name, instance_id
            )
        return cluster

    def register_container_instance(self, cluster: str, instance_id: str) -> str:
        document = {"instanceId": instance_id, "region": self.region, "accountId": self.account}
        reply = self.boto3_client("ecs").register_container_instance(
            cluster=cluster, instanceIdentityDocument=json.dumps(document)
        )
        return str(reply["containerInstance"]["containerInstanceArn"])

    def register_task_definition(
        self,
        family: str,
        *,
        network_mode: str = "bridge",
        container_port: int | None = 80,
        host_port: int = 0,
        stop_timeout: int | None = None,
        tags: dict[str, str] | None = None,
        cpu: int = 128,
        memory: int = 128,
    ) -> str:
        container: dict[str, Any] = {
            "name": family,
            "image": DEFAULT_IMAGE,
            "cpu": cpu,
            "memory": memory,
            "essential": True,
        }
        if container_port is not None:
            mapping = {"containerPort": container_port, "protocol": "tcp"}
            if host_port or network_mode != "bridge":
                mapping["hostPort"] = host_port or container_port
            container["portMappings"] = [mapping]
        if stop_timeout is not None:
            container["stopTimeout"] = stop_timeout
        params: dict[str, Any] = {
            "family": family,
            "networkMode": network_mode,
            "containerDefinitions": [container],
        }
        if tags:
            params["tags"] = [{"key": k, "value": v} for k, v in tags.items()]
        reply = self.boto3_client("ecs").register_task_definition(**params)
        return str(reply["taskDefinition"]["taskDefinitionArn"])

    def create_target_group(
        self,
        name: str,
        *,
        port: int = 80,
        target_type: str = "instance",
        deregistration_delay: int = 1,
        load_balancer: bool = True,
    ) -> str:
        """A target group (and an ALB forwarding to it) in the stack's VPC."""
        elbv2 = self.boto3_client("elbv2")
        subnets = self._ensure_subnets()
        vpc = self.boto3_client("ec2").describe_subnets(SubnetIds=subnets[:1])["Subnets"][0][
            "VpcId"
        ]
        arn = str(
            elbv2.create_target_group(
                Name=name, Protocol="HTTP", Port=port, VpcId=vpc, TargetType=target_type
            )["TargetGroups"][0]["TargetGroupArn"]
        )
        elbv2.modify_target_group_attributes(
            TargetGroupArn=arn,
            Attributes=[
                {"Key": "deregistration_delay.timeout_seconds", "Value": str(deregistration_delay)}
            ],
        )
        if load_balancer:
            lb = elbv2.create_load_balancer(Name=f"{name}-alb"[:32], Subnets=subnets)
            elbv2.create_listener(
                LoadBalancerArn=lb["LoadBalancers"][0]["LoadBalancerArn"],
                Protocol="HTTP",
                Port=80,
                DefaultActions=[{"Type": "forward", "TargetGroupArn": arn}],
            )
        return arn

    def create_service(
        self,
        cluster: str,
        name: str,
        task_definition: str,
        *,
        desired_count: int = 1,
        target_group: str | None = None,
        container_port: int = 80,
        daemon: bool = False,
    ) -> str:
        """A service; its tasks are placed (and registered in `target_group`) at once."""
        params: dict[str, Any] = {
            "cluster": cluster,
            "serviceName": name,
            "taskDefinition": task_definition,
            "launchType": "EC2",
            "schedulingStrategy": "DAEMON" if daemon else "REPLICA",
        }
        if not daemon:
            params["desiredCount"] = desired_count
        if target_group:
            family = task_definition.rsplit("/", 1)[-1].rsplit(":", 1)[0]
            params["loadBalancers"] = [
                {
                    "targetGroupArn": target_group,
                    "containerName": family,
                    "containerPort": container_port,
                }
            ]
        reply = self.boto3_client("ecs").create_service(**params)
        self.ecs_tick()
        return str(reply["service"]["serviceArn"])

    def run_standalone_task(
        self,
        cluster: str,
        task_definition: str,
        *,
        instance_id: str | None = None,
        started_by: str | None = None,
        group: str | None = None,
        tags: dict[str, str] | None = None,
        overrides: dict[str, Any] | None = None,
    ) -> str:
        """RunTask (or StartTask on `instance_id`'s container instance): a job's task."""
        client = self.boto3_client("ecs")
        params: dict[str, Any] = {"cluster": cluster, "taskDefinition": task_definition}
        if started_by:
            params["startedBy"] = started_by
        if group:
            params["group"] = group
        if tags:
            params["tags"] = [{"key": k, "value": v} for k, v in tags.items()]
        if overrides:
            params["overrides"] = overrides
        if instance_id is None:
            reply = client.run_task(launchType="EC2", **params)
        else:
            container_instance = self.container_instance_arn(cluster, instance_id)
            reply = client.start_task(containerInstances=[container_instance], **params)
        return str(reply["tasks"][0]["taskArn"])

    # --- views ----------------------------------------------------------------------------

    def container_instance_arn(self, cluster: str, instance_id: str) -> str:
        client = self.boto3_client("ecs")
        arns = client.list_container_instances(cluster=cluster)["containerInstanceArns"]
        described = client.describe_container_instances(cluster=cluster, containerInstances=arns)
        for found in described["containerInstances"]:
            if found["ec2InstanceId"] == instance_id:
                return str(found["containerInstanceArn"])
        raise KeyError(f"{instance_id} is not in cluster {cluster}")

    def container_instance(self, cluster: str, instance_id: str) -> dict[str, Any]:
        """DescribeContainerInstances for one instance: status, attributes (as a dict), counts."""
        client = self.boto3_client("ecs")
        arn = self.container_instance_arn(cluster, instance_id)
        found = client.describe_container_instances(cluster=cluster, containerInstances=[arn])
        info: dict[str, Any] = found["containerInstances"][0]
        info["attributeMap"] = {a["name"]: a.get("value") for a in info.get("attributes", [])}
        return info

    def ecs_tasks(self, cluster: str, *, instance_id: str | None = None) -> list[dict[str, Any]]:
        """Every task of the cluster (or of one instance), in every state, with tags."""
        client = self.boto3_client("ecs")
        params: dict[str, Any] = {"cluster": cluster}
        if instance_id:
            params["containerInstance"] = self.container_instance_arn(cluster, instance_id)
        arns: list[str] = []
        for status in ("RUNNING", "STOPPED"):
            arns += client.list_tasks(desiredStatus=status, **params)["taskArns"]
        if not arns:
            return []
        tasks: list[dict[str, Any]] = client.describe_tasks(
            cluster=cluster, tasks=arns, include=["TAGS"]
        )["tasks"]
        return tasks

    def target_health(self, target_group: str) -> dict[tuple[str, int], str]:
        """(Id, Port) -> state, for every registered (or draining) target."""
        reply = self.boto3_client("elbv2").describe_target_health(TargetGroupArn=target_group)
        return {
            (d["Target"]["Id"], int(d["Target"]["Port"])): d["TargetHealth"]["State"]
            for d in reply["TargetHealthDescriptions"]
        }
