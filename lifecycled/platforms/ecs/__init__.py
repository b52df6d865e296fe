"""ECS: find the container instance behind an instance, record intent, set DRAINING, move the
tasks off (service tasks out of their load balancers first; standalone tasks are jobs).

Platform code never parses events; it is told which instance, until when, and acts.
The drain record lives in the container instance's attributes (see codec.py).
"""

from __future__ import annotations

import logging
from functools import partial

from lifecycled.clients.aws import AwsClients
from lifecycled.clients.aws.ecs import EcsTask
from lifecycled.jobs import Decision, Workload, decide
from lifecycled.model import InstanceId
from lifecycled.observe import Metrics, fields
from lifecycled.platforms import DrainState
from lifecycled.platforms.ecs.codec import (
    PHASE_ATTRIBUTE,
    record_attributes,
    record_from_attributes,
)
from lifecycled.platforms.ecs.index import ContainerInstanceIndex, split_target, target_of
from lifecycled.platforms.ecs.services import ServiceTasks
from lifecycled.platforms.ecs.tasks import StandaloneTasks, task_id
from lifecycled.platforms.vacate import Items, Step, vacate_loop
from lifecycled.record import DrainRecord, Phase
from lifecycled.retry import retry
from lifecycled.settings import Settings

__all__ = ["EcsPlatform", "split_target", "target_of"]

log = logging.getLogger(__name__)

DRAINING = "DRAINING"
ACTIVE = "ACTIVE"
STOPPED = "STOPPED"


class EcsPlatform:
    def __init__(self, aws: AwsClients, settings: Settings, metrics: Metrics) -> None:
        self._aws = aws
        self._settings = settings
        self._metrics = metrics
        self._index = ContainerInstanceIndex(
            aws, settings.ecs.clusters, settings.drain.node_cache_seconds
        )
        self._services = ServiceTasks(aws, settings, metrics)
        self._jobs = StandaloneTasks(aws, settings, metrics, self._services)

    async def resolve(self, instance_id: InstanceId) -> str | None:
        found = await self._index.find(instance_id)
        return target_of(found.cluster, found.arn) if found else None

    async def write_record(self, target: str, record: DrainRecord, *, cordon: bool) -> None:
        """Record first, then DRAINING: ECS stops placing tasks there and starts replacing
        service tasks (AWS's own drain); standalone tasks are left to us."""
        cluster, arn = split_target(target)
        values = record_attributes(record)
        await retry(
            lambda: self._aws.ecs.put_attributes(cluster, arn, values),
            delays=self._settings.calls.retry_delays,
            what=f"record drain on {arn}",
        )
        if cordon:
            await retry(
                lambda: self._aws.ecs.set_container_instance_state(cluster, arn, DRAINING),
                delays=self._settings.calls.retry_delays,
                what=f"set {arn} DRAINING",
            )

    async def uncordon(self, target: str, record: DrainRecord) -> None:
        """The change was cancelled: write `record`, then the instance is ACTIVE again."""
        cluster, arn = split_target(target)
        await self.write_record(target, record, cordon=False)
        await retry(
            lambda: self._aws.ecs.set_container_instance_state(cluster, arn, ACTIVE),
            delays=self._settings.calls.retry_delays,
            what=f"set {arn} ACTIVE",
        )

    async def ready(self, target: str) -> bool:
        """An ACTIVE container instance accepts tasks."""
        cluster, arn = split_target(target)
        found = await self._aws.ecs.describe_container_instances(cluster, [arn])
        return bool(found) and found[0].status == ACTIVE

    async def open_records(self) -> list[tuple[str, DrainRecord]]:
        found: list[tuple[str, DrainRecord]] = []
        for cluster in await self._index.clusters():
            arns = await self._aws.ecs.list_attribute_targets(cluster, PHASE_ATTRIBUTE, Phase.OPEN)
            if not arns:
                continue
            for info in await self._aws.ecs.describe_container_instances(cluster, arns):
                try:
                    record = record_from_attributes(info.attributes)
                except (ValueError, KeyError, IndexError) as exc:
                    log.warning(
                        "unreadable drain record", extra=fields(node=info.arn, error=str(exc))
                    )
                    continue
                if record is not None:
                    found.append((target_of(cluster, info.arn), record))
        return found

    async def vacate(self, target: str, drain: DrainState) -> bool:
        """Move every task but daemon-service tasks off (`_Tasks`); True once none is left in
        any state but STOPPED (lastStatus, so STOPPING and DEACTIVATING tasks still count)."""
        tasks = _Tasks(target, drain, self._aws, self._settings, self._services, self._jobs)
        return await vacate_loop(
            tasks,
            drain,
            poll=self._settings.drain.poll_seconds,
            retry_delays=self._settings.calls.retry_delays,
            metrics=self._metrics,
        )


class _Tasks(Items[EcsTask]):
    """A container instance's tasks for the vacate loop."""

    noun = "task"
    overlap = True  # a service task waits out its target group's deregistration first

    def __init__(
        self,
        target: str,
        drain: DrainState,
        aws: AwsClients,
        settings: Settings,
        services: ServiceTasks,
        jobs: StandaloneTasks,
    ) -> None:
        self._cluster, self._arn = split_target(target)
        self.where: dict[str, object] = {"node": self._arn, "instance": drain.record.instance_id}
        self._drain = drain
        self._aws = aws
        self._settings = settings
        self._services = services
        self._jobs = jobs
        self._stopped: set[str] = set()  # seen STOPPED: not described again

    def key(self, task: EcsTask) -> str:
        return task.arn

    def label(self, task: EcsTask) -> str:
        return f"{task.group}/{task_id(task.arn)}"

    async def left(self) -> list[EcsTask]:
        """Tasks on the instance, by lastStatus, daemon-service tasks left out.

        ListTasks filters on desiredStatus (RUNNING by default): a task being stopped has
        desiredStatus STOPPED while it is still RUNNING/DEACTIVATING/STOPPING, so both lists
        are read. Tasks seen STOPPED once are not described again.
        """
        cluster, arn = self._cluster, self._arn

        async def listing() -> list[EcsTask]:
            arns: list[str] = []
            for status in ("RUNNING", STOPPED):
                arns += await self._aws.ecs.list_task_arns(
                    cluster, container_instance=arn, desired_status=status
                )
            fresh = [a for a in dict.fromkeys(arns) if a not in self._stopped]
            return await self._aws.ecs.describe_tasks(cluster, fresh) if fresh else []

        tasks = await retry(
            listing, delays=self._settings.calls.retry_delays, what=f"list tasks on {arn}"
        )
        left = []
        for task in tasks:
            if task.last_status == STOPPED:
                self._stopped.add(task.arn)
            elif not await self._services.is_daemon(cluster, task):
                left.append(task)
        return left

    async def decide(self, task: EcsTask) -> Step | None:
        """What to do about one task now, or None (wait: ECS or the task itself acts)."""
        if task.desired_status == STOPPED:
            return None  # being stopped already; wait for STOPPED
        cluster, drain = self._cluster, self._drain
        remaining = drain.remaining()
        stop_lead = self._settings.jobs.stop_lead_seconds
        reason = str(drain.record.kind)
        instance = drain.record.instance_id
        if task.service is not None:
            # A long deadline lets ECS replace service tasks itself (DRAINING); a short one
            # cannot wait for that, so we deregister and stop them ourselves.
            if remaining > stop_lead:
                return None
            return partial(self._services.retire, cluster, task, drain)
        idempotent = await self._jobs.idempotent(task)
        requeue = self._settings.jobs.requeue_enabled
        decision = decide(
            Workload(is_job=True, idempotent=idempotent, requeue=requeue),
            remaining=remaining,
            stop_lead=stop_lead,
        )
        if decision is Decision.WAIT:
            return None
        if decision is Decision.REQUEUE or (requeue and self._settings.ecs.rerun_idempotent):
            return partial(self._jobs.requeue, cluster, task, instance, reason)
        return partial(self._jobs.stop, cluster, task, instance, reason, "job")
