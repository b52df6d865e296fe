"""AwsStack: moto's server in this process, plus set-up and scenario helpers."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import boto3  # type: ignore[import-untyped]
from botocore.config import Config

from lifecycled.rules import EVENT_RULES

from . import ecs, payloads
from .asg import LOCK, expire_all, hooked_backends
from .calls import DEVSTACK_AGENT, CallLog
from .ecs_stack import EcsHelpers
from .patches import install
from .payloads import LAUNCHING, TERMINATING, EventSpec
from .server import RecordingMotoServer

log = logging.getLogger(__name__)

MOTO_DEFAULT_ACCOUNT = "123456789012"  # what moto maps any dummy access key to
TICK_SECONDS = 0.05  # how often lifecycle hook timeouts are checked
IMAGE_ID = "ami-12c6146b"  # one of the AMIs moto knows
VPC_CIDR = "10.0.0.0/16"
# One /18 per zone (16,379 usable addresses each): storm-sized groups (1,000+ instances) fit.
SUBNETS = (("a", "10.0.0.0/18"), ("b", "10.0.64.0/18"), ("c", "10.0.128.0/18"))


@dataclass(frozen=True)
class Queue:
    url: str
    arn: str
    dlq_url: str | None


@dataclass(frozen=True)
class Instance:
    id: str
    private_dns_name: str
    private_ip: str
    az: str


class AwsStack(EcsHelpers):
    def __init__(
        self, *, region: str = "us-east-1", account: str = "123456789012", port: int = 0
    ) -> None:
        self.region = region
        self.account = account
        self.port = port  # 0: any free port
        self.endpoint_url = ""
        self.calls = CallLog()
        self._server: RecordingMotoServer | None = None
        self._ticker: threading.Thread | None = None
        self._stopping = threading.Event()
        self._session: Any = None
        self._clients: dict[str, Any] = {}
        self._subnets: list[str] = []
        self._remote = False

    @classmethod
    def connect(
        cls, endpoint_url: str, *, region: str = "us-east-1", account: str = MOTO_DEFAULT_ACCOUNT
    ) -> AwsStack:
        """Helpers for a stack served by another process (`python -m devstack.aws`, or
        `AwsStackProcess`). Everything goes through the endpoint, except what is in-process
        by nature: `calls` stays empty and `transitions()` sees nothing."""
        stack = cls(region=region, account=account)
        stack.endpoint_url = endpoint_url
        stack._remote = True
        return stack

    # --- lifetime ---------------------------------------------------------------------

    def start(self) -> None:
        if self._server is not None or self._remote:
            return
        if self.account != MOTO_DEFAULT_ACCOUNT:
            # moto maps every dummy access key to its default account otherwise.
            os.environ["MOTO_ACCOUNT_ID"] = self.account
        install()
        server = RecordingMotoServer(self.calls, port=self.port)
        server.start()
        host, port = server.get_host_and_port()
        self._server = server
        self.endpoint_url = f"http://{host}:{port}"
        self._stopping.clear()
        self._ticker = threading.Thread(target=self._tick, name="devstack-aws-ticker", daemon=True)
        self._ticker.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None
        if self._server is not None:
            self._server.stop()
            self._server = None
        self._clients.clear()

    def __enter__(self) -> AwsStack:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget every resource in every moto backend (moto's state is per process)."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass
        self._subnets = []
        self.calls.clear()

    def _tick(self) -> None:
        while not self._stopping.wait(TICK_SECONDS):
            try:
                expire_all(time.monotonic())
            except Exception:  # keep ticking; a broken pass must not end all timeouts
                log.exception("lifecycle hook timeout pass failed")
            try:
                with LOCK:
                    ecs.tick_all(time.monotonic())
            except Exception:
                log.exception("ECS scheduler pass failed")

    # --- clients ----------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """Environment that points unmodified AWS SDKs (botocore, the CLI) at this stack."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_EC2_METADATA_DISABLED": "true",
            # No user profile or config file may redirect or re-credential the clients.
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }

    def boto3_client(self, service: str) -> Any:
        client = self._clients.get(service)
        if client is None:
            if self._session is None:
                self._session = boto3.session.Session(
                    aws_access_key_id="testing",
                    aws_secret_access_key="testing",
                    region_name=self.region,
                )
            config = Config(user_agent_extra=DEVSTACK_AGENT)
            client = self._session.client(service, endpoint_url=self.endpoint_url, config=config)
            self._clients[service] = client
        return client

    # --- set-up -----------------------------------------------------------------------

    def create_queue(
        self,
        name: str,
        *,
        dlq: bool = True,
        max_receive_count: int = 3,
        visibility_timeout: int = 30,
    ) -> Queue:
        sqs = self.boto3_client("sqs")
        fifo = name.endswith(".fifo")
        base: dict[str, str] = {"FifoQueue": "true"} if fifo else {}
        dlq_url = None
        attributes = dict(base, VisibilityTimeout=str(visibility_timeout))
        if dlq:
            dlq_name = f"{name.removesuffix('.fifo')}-dlq" + (".fifo" if fifo else "")
            dlq_url = sqs.create_queue(QueueName=dlq_name, Attributes=base)["QueueUrl"]
            policy = {
                "deadLetterTargetArn": self._queue_arn(dlq_url),
                "maxReceiveCount": str(max_receive_count),
            }
            attributes["RedrivePolicy"] = json.dumps(policy)
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        return Queue(url=url, arn=self._queue_arn(url), dlq_url=dlq_url)

    def _queue_arn(self, url: str) -> str:
        attrs = self.boto3_client("sqs").get_queue_attributes(
            QueueUrl=url, AttributeNames=["QueueArn"]
        )
        return str(attrs["Attributes"]["QueueArn"])

    def route_events_to(self, queue: Queue) -> None:
        """Create EVENT_RULES on the default bus, each targeting `queue`, and the queue policy
        that lets EventBridge send to it (moto does not enforce it; AWS does)."""
        events = self.boto3_client("events")
        rule_arns = []
        for rule in EVENT_RULES:
            created = events.put_rule(
                Name=rule.name, EventPattern=json.dumps(rule.pattern), State="ENABLED"
            )
            rule_arns.append(created["RuleArn"])
            target_id = queue.arn.rsplit(":", 1)[-1][:64]
            events.put_targets(Rule=rule.name, Targets=[{"Id": target_id, "Arn": queue.arn}])
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "lifecycled-eventbridge",
                    "Effect": "Allow",
                    "Principal": {"Service": "events.amazonaws.com"},
                    "Action": "sqs:SendMessage",
                    "Resource": queue.arn,
                    "Condition": {"ArnEquals": {"aws:SourceArn": rule_arns}},
                }
            ],
        }
        self.boto3_client("sqs").set_queue_attributes(
            QueueUrl=queue.url, Attributes={"Policy": json.dumps(policy)}
        )

    def create_group(
        self,
        name: str,
        *,
        size: int,
        terminate_hook: str | None = "drain",
        heartbeat_timeout: int = 300,
        default_result: str = "ABANDON",
        launch_hook: str | None = None,
        notification_queue: Queue | None = None,
        instance_type: str = "m5.large",
        spot: bool = False,
        tags: dict[str, str] | None = None,
    ) -> list[Instance]:
        """An Auto Scaling group of `size` instances spread over three subnets.

        Hooks are part of CreateAutoScalingGroup (LifecycleHookSpecificationList), so with a
        launch hook the first instances start in Pending:Wait, as on AWS.
        """
        template = f"{name}-template"
        data: dict[str, Any] = {"ImageId": IMAGE_ID, "InstanceType": instance_type}
        if spot:
            data["InstanceMarketOptions"] = {"MarketType": "spot"}
        self.boto3_client("ec2").create_launch_template(
            LaunchTemplateName=template, LaunchTemplateData=data
        )
        hooks = [
            self._hook_spec(hook, transition, heartbeat_timeout, default_result, notification_queue)
            for hook, transition in ((terminate_hook, TERMINATING), (launch_hook, LAUNCHING))
            if hook
        ]
        self.boto3_client("autoscaling").create_auto_scaling_group(
            AutoScalingGroupName=name,
            LaunchTemplate={"LaunchTemplateName": template, "Version": "$Latest"},
            MinSize=0,
            MaxSize=max(10, 2 * size),
            DesiredCapacity=size,
            VPCZoneIdentifier=",".join(self._ensure_subnets()),
            LifecycleHookSpecificationList=hooks,
            # Propagated to the instances, as an EKS node group's cluster tags are.
            Tags=[
                {"Key": k, "Value": v, "PropagateAtLaunch": True} for k, v in (tags or {}).items()
            ],
        )
        return self.group_instances(name)

    def _hook_spec(
        self,
        name: str,
        transition: str,
        heartbeat_timeout: int,
        default_result: str,
        queue: Queue | None,
    ) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "LifecycleHookName": name,
            "LifecycleTransition": transition,
            "HeartbeatTimeout": heartbeat_timeout,
            "DefaultResult": default_result,
        }
        if queue is not None:
            spec["NotificationTargetARN"] = queue.arn
            spec["RoleARN"] = f"arn:aws:iam::{self.account}:role/lifecycled-hook-notifications"
        return spec

    def _ensure_subnets(self) -> list[str]:
        if not self._subnets:
            ec2 = self.boto3_client("ec2")
            vpc = ec2.create_vpc(CidrBlock=VPC_CIDR)["Vpc"]["VpcId"]
            self._subnets = [
                ec2.create_subnet(
                    VpcId=vpc, CidrBlock=cidr, AvailabilityZone=f"{self.region}{zone}"
                )["Subnet"]["SubnetId"]
                for zone, cidr in SUBNETS
            ]
        return self._subnets

    def group_instances(self, group: str) -> list[Instance]:
        """The group's members, in every lifecycle state."""
        described = self.boto3_client("autoscaling").describe_auto_scaling_groups(
            AutoScalingGroupNames=[group]
        )
        ids = [i["InstanceId"] for g in described["AutoScalingGroups"] for i in g["Instances"]]
        return self.instances(ids)

    def instance(self, instance_id: str) -> Instance:
        return self.instances([instance_id])[0]

    def instances(self, instance_ids: list[str]) -> list[Instance]:
        """Described in batches of 200 (one call per instance is slow at 1,000)."""
        found: dict[str, Instance] = {}
        pages = self.boto3_client("ec2").get_paginator("describe_instances")
        for start in range(0, len(instance_ids), 200):
            batch = instance_ids[start : start + 200]
            reservations = [r for p in pages.paginate(InstanceIds=batch) for r in p["Reservations"]]
            for reservation in reservations:
                for item in reservation["Instances"]:
                    found[item["InstanceId"]] = Instance(
                        id=item["InstanceId"],
                        private_dns_name=item["PrivateDnsName"],
                        private_ip=item["PrivateIpAddress"],
                        az=item["Placement"]["AvailabilityZone"],
                    )
        return [found[i] for i in instance_ids]

    # --- scenarios --------------------------------------------------------------------

    def send_spot_interruption(
        self, instance_id: str, *, time: datetime | None = None
    ) -> dict[str, Any]:
        return self._put(payloads.spot_interruption(self.region, self.account, instance_id), time)

    def send_rebalance_recommendation(
        self, instance_id: str, *, time: datetime | None = None
    ) -> dict[str, Any]:
        spec = payloads.rebalance_recommendation(self.region, self.account, instance_id)
        return self._put(spec, time)

    def send_scheduled_change(
        self,
        instance_ids: list[str],
        *,
        start: datetime,
        end: datetime,
        status: str = "upcoming",
        event_type_code: str = "AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED",
        entity_arns: bool = False,
        time: datetime | None = None,
    ) -> dict[str, Any]:
        spec = payloads.scheduled_change(
            self.region,
            self.account,
            instance_ids,
            start=start,
            end=end,
            status=status,
            event_type_code=event_type_code,
            event_id=f"{event_type_code}_{uuid.uuid4().hex[:17].upper()}",
            entity_arns=entity_arns,
        )
        return self._put(spec, time)

    def send_state_change(
        self, instance_id: str, state: str, *, time: datetime | None = None
    ) -> dict[str, Any]:
        """Only the event: the instance itself is untouched (see force_terminate)."""
        return self._put(payloads.state_change(self.region, self.account, instance_id, state), time)

    def _put(self, spec: EventSpec, when: datetime | None) -> dict[str, Any]:
        when = when or datetime.now(UTC)
        entry = {
            "Source": spec.source,
            "DetailType": spec.detail_type,
            "Detail": json.dumps(spec.detail),
            "Resources": spec.resources,
            "Time": when,
        }
        result = self.boto3_client("events").put_events(Entries=[entry])["Entries"][0]
        if "EventId" not in result:
            raise RuntimeError(f"PutEvents refused the event: {result}")
        return payloads.envelope(
            spec, event_id=result["EventId"], account=self.account, region=self.region, time=when
        )

    def scale_in(self, group: str, instance_id: str) -> None:
        """TerminateInstanceInAutoScalingGroup, decrementing desired capacity."""
        members = {i.id for i in self.group_instances(group)}
        if instance_id not in members:
            raise ValueError(f"{instance_id} is not in group {group}")
        self.boto3_client("autoscaling").terminate_instance_in_auto_scaling_group(
            InstanceId=instance_id, ShouldDecrementDesiredCapacity=True
        )

    def force_terminate(self, instance_id: str) -> None:
        """EC2 TerminateInstances: the machine dies whatever its hooks say."""
        self.boto3_client("ec2").terminate_instances(InstanceIds=[instance_id])

    def lifecycle_state(self, instance_id: str) -> str | None:
        found = self.boto3_client("autoscaling").describe_auto_scaling_instances(
            InstanceIds=[instance_id]
        )["AutoScalingInstances"]
        return str(found[0]["LifecycleState"]) if found else None

    def transitions(self, instance_id: str) -> list[str]:
        """Every lifecycle state the instance passed through, oldest first (in-process view;
        catches states as brief as Terminating:Proceed)."""
        return [
            state
            for backend in hooked_backends()
            if backend.account_id == self.account and backend.region_name == self.region
            for _, iid, state in list(backend.transitions)
            if iid == instance_id
        ]

    def ec2_state(self, instance_id: str) -> str:
        reservations = self.boto3_client("ec2").describe_instances(InstanceIds=[instance_id])
        return str(reservations["Reservations"][0]["Instances"][0]["State"]["Name"])
