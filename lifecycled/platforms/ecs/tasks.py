"""Standalone tasks (started by RunTask, not by a service) are jobs.

Idempotent ones are stopped (and re-run when LIFECYCLED_ECS_RERUN_IDEMPOTENT is set);
non-idempotent ones are requeued exactly once: the RequeueRecord goes into a tag on the
original *before* RunTask, the copy carries a deterministic name (tag `lifecycled.io/name`,
also RunTask's clientToken), and a retry that finds the record, or finds a task with that
name, never runs a second copy.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from lifecycled.clients.aws import AwsClients
from lifecycled.clients.aws.ecs import EcsTask
from lifecycled.jobs import (
    ATTEMPT_ANNOTATION,
    IDEMPOTENT_ANNOTATION,
    REASON_ANNOTATION,
    REQUEUE_ANNOTATION,
    REQUEUE_OF_ANNOTATION,
    RequeueRecord,
    parse_flag,
    requeue_name,
)
from lifecycled.observe import Metrics, fields
from lifecycled.platforms.ecs.codec import requeue_from_tag, requeue_tag
from lifecycled.platforms.ecs.services import ServiceTasks
from lifecycled.record import PREFIX
from lifecycled.settings import Settings

log = logging.getLogger(__name__)

NAME_TAG = PREFIX + "name"  # a job's stable identity across requeues
OUR_TAGS = frozenset({REQUEUE_ANNOTATION, NAME_TAG, REQUEUE_OF_ANNOTATION, ATTEMPT_ANNOTATION})


def task_id(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


def family_of(task_definition_arn: str) -> str:
    """`arn:...:task-definition/batch:3` -> `batch`."""
    return task_definition_arn.rsplit("/", 1)[-1].rsplit(":", 1)[0]


def copy_spec(task: EcsTask, record: RequeueRecord, instance_id: str) -> dict[str, Any]:
    """RunTask parameters for the copy: same definition, overrides, group and startedBy,
    plus attempt and reason tags, placed away from the draining instance."""
    tags = {k: v for k, v in task.tags.items() if not k.startswith("aws:") and k not in OUR_TAGS}
    tags.update(
        {
            NAME_TAG: record.copy,
            REQUEUE_OF_ANNOTATION: task_id(task.arn),
            ATTEMPT_ANNOTATION: str(record.attempt),
            REASON_ANNOTATION: record.reason,
        }
    )
    spec: dict[str, Any] = {
        "taskDefinition": task.task_definition_arn,
        "count": 1,
        "group": task.group,
        "overrides": task.overrides,
        "tags": [{"key": k, "value": v} for k, v in tags.items()],
        "clientToken": record.copy,  # RunTask's own idempotency token
        "placementConstraints": [
            {"type": "memberOf", "expression": f"attribute:ecs.instance-id != {instance_id}"}
        ],
    }
    if task.started_by:
        spec["startedBy"] = task.started_by
    if task.launch_type:
        spec["launchType"] = task.launch_type
    if task.subnet:  # awsvpc: the security groups are not in DescribeTasks; the subnet is
        spec["networkConfiguration"] = {"awsvpcConfiguration": {"subnets": [task.subnet]}}
    return spec


class StandaloneTasks:
    def __init__(
        self, aws: AwsClients, settings: Settings, metrics: Metrics, services: ServiceTasks
    ) -> None:
        self._aws = aws
        self._settings = settings
        self._metrics = metrics
        self._services = services

    async def idempotent(self, task: EcsTask) -> bool:
        """The task's tag, else its task definition's tag, else the configured default."""
        default = self._settings.jobs.idempotent_default
        if IDEMPOTENT_ANNOTATION in task.tags:
            return parse_flag(task.tags[IDEMPOTENT_ANNOTATION], default)
        definition = await self._services.definition(task.task_definition_arn)
        return parse_flag(definition.tags.get(IDEMPOTENT_ANNOTATION), default)

    async def stop(
        self, cluster: str, task: EcsTask, instance_id: str, reason: str, why: str
    ) -> None:
        await self._aws.ecs.stop_task(cluster, task.arn, f"lifecycled: {reason}")
        self._metrics.tasks_stopped.labels(why).inc()
        log.info(
            "task stopped",
            extra=fields(instance=instance_id, task=task_id(task.arn), group=task.group, why=why),
        )

    async def requeue(self, cluster: str, task: EcsTask, instance_id: str, reason: str) -> None:
        text = task.tags.get(REQUEUE_ANNOTATION)
        record = requeue_from_tag(text) if text else None
        if record is None:
            attempt = int(task.tags.get(ATTEMPT_ANNOTATION, "0") or 0) + 1
            if attempt > self._settings.jobs.requeue_max_attempts:
                self._limit_reached(task, attempt)
                await self.stop(cluster, task, instance_id, reason, "limit")
                return
            name = task.tags.get(NAME_TAG) or task_id(task.arn)
            record = RequeueRecord(requeue_name(name, attempt), attempt, reason, instance_id)
            # The intent goes first: after a crash the record says which copy to look for.
            await self._aws.ecs.tag_resource(task.arn, {REQUEUE_ANNOTATION: requeue_tag(record)})
        if not record.done:
            started = await self._start_copy(cluster, task, record, instance_id)
            done = RequeueRecord(record.copy, record.attempt, record.reason, record.node, True)
            await self._aws.ecs.tag_resource(task.arn, {REQUEUE_ANNOTATION: requeue_tag(done)})
            if started:
                self._metrics.jobs_requeued.labels(record.reason).inc()
            log.info(
                "job requeued",
                extra=fields(
                    instance=instance_id,
                    task=task_id(task.arn),
                    copy=record.copy,
                    attempt=record.attempt,
                    reason=record.reason,
                    started=started,
                ),
            )
        await self.stop(cluster, task, instance_id, reason, "requeued")

    async def _start_copy(
        self, cluster: str, task: EcsTask, record: RequeueRecord, instance_id: str
    ) -> bool:
        """Run (or hand off) the copy unless it exists already. True when this call started it."""
        spec = copy_spec(task, record, instance_id)
        if self._settings.jobs.requeue_queue_url:
            message = {
                "kind": "lifecycled.requeue",
                "platform": "ecs",
                "cluster": cluster,
                "original": task.arn,
                "attempt": record.attempt,
                "reason": record.reason,
                "runTask": {k: v for k, v in spec.items() if k != "placementConstraints"},
            }
            await self._aws.sqs.send_message(
                self._settings.jobs.requeue_queue_url,
                json.dumps(message, sort_keys=True),
                deduplication_id=record.copy,
                group_id=task.started_by or family_of(task.task_definition_arn),
            )
            return True
        if await self._copy_exists(cluster, task, record.copy):
            return False
        await self._aws.ecs.run_task(cluster, spec)
        return True

    async def _copy_exists(self, cluster: str, task: EcsTask, copy: str) -> bool:
        # ListTasks filters by startedBy or family, not by tag: narrow, then look at tags.
        by = {"started_by": task.started_by} if task.started_by else {}
        family = None if task.started_by else family_of(task.task_definition_arn)
        arns: list[str] = []
        for status in ("RUNNING", "STOPPED"):
            arns += await self._aws.ecs.list_task_arns(
                cluster, family=family, desired_status=status, **by
            )
        arns = [a for a in arns if a != task.arn]
        if not arns:
            return False
        return any(
            t.tags.get(NAME_TAG) == copy for t in await self._aws.ecs.describe_tasks(cluster, arns)
        )

    def _limit_reached(self, task: EcsTask, attempt: int) -> None:
        self._metrics.requeue_limit.inc()
        log.error(
            "job reached its requeue limit; not requeued",
            extra=fields(
                task=task_id(task.arn),
                group=task.group,
                attempt=attempt,
                limit=self._settings.jobs.requeue_max_attempts,
            ),
        )
