"""Service tasks on a short deadline: take them out of their load balancers, then stop them.

Two minutes is too short to wait for ECS's own connection draining, so the order is ours:
DeregisterTargets -> DescribeTargetHealth until the target is `unused` (or not registered)
or the target group's deregistration delay ran out -> StopTask. The wait is cut short so that
the task's stopTimeout still fits before the drain's cutoff.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from lifecycled.clients.aws import AwsClients
from lifecycled.clients.aws.ecs import EcsService, EcsTask, TaskDefinitionInfo
from lifecycled.clients.aws.elbv2 import LbTarget
from lifecycled.observe import Metrics, fields
from lifecycled.platforms import DrainState
from lifecycled.platforms.targets import Cache, TargetGroups, WaitOutcome, wait_gone
from lifecycled.settings import Settings

log = logging.getLogger(__name__)


def targets_of(task: EcsTask, service: EcsService, instance_id: str) -> dict[str, list[LbTarget]]:
    """Target group -> this task's targets in it (awsvpc: ENI IP; bridge/host: host port)."""
    found: dict[str, list[LbTarget]] = defaultdict(list)
    for lb in service.load_balancers:
        if task.ip:
            found[lb.target_group].append(LbTarget(task.ip, lb.container_port))
            continue
        for binding in task.bindings:
            if binding.container == lb.container and binding.container_port == lb.container_port:
                found[lb.target_group].append(LbTarget(instance_id, binding.host_port))
    return dict(found)


class ServiceTasks:
    def __init__(self, aws: AwsClients, settings: Settings, metrics: Metrics) -> None:
        self._aws = aws
        self._settings = settings
        self._metrics = metrics
        self._services: Cache[tuple[str, str], EcsService | None] = Cache(
            settings.drain.node_cache_seconds
        )
        self._definitions: Cache[str, TaskDefinitionInfo] = Cache(float("inf"))
        self._groups = TargetGroups(aws, settings.drain.node_cache_seconds)

    async def service(self, cluster: str, name: str) -> EcsService | None:
        key = (cluster, name)
        cached = self._services.get(key)
        if cached is None:
            found = await self._aws.ecs.describe_services(cluster, [name])
            cached = self._services.put(key, found[0] if found else None)
        return cached

    async def definition(self, arn: str) -> TaskDefinitionInfo:
        cached = self._definitions.get(arn)
        if cached is None:
            cached = self._definitions.put(arn, await self._aws.ecs.describe_task_definition(arn))
        return cached

    async def is_daemon(self, cluster: str, task: EcsTask) -> bool:
        if task.service is None:
            return False
        if task.service in self._settings.ecs.daemon_services:
            return True
        service = await self.service(cluster, task.service)
        return service is not None and service.scheduling_strategy == "DAEMON"

    async def retire(self, cluster: str, task: EcsTask, drain: DrainState) -> None:
        """Deregister the task's targets, wait until they left (within bounds), stop it."""
        assert task.service is not None
        service = await self.service(cluster, task.service)
        instance = drain.record.instance_id
        groups = targets_of(task, service, instance) if service else {}
        if groups:
            await self._deregister(groups, instance)
            stop_timeout = (await self.definition(task.task_definition_arn)).stop_timeout
            await self._wait_gone(groups, drain, stop_timeout)
        await self._aws.ecs.stop_task(cluster, task.arn, f"lifecycled: {drain.record.kind}")
        self._metrics.tasks_stopped.labels("service").inc()
        log.info(
            "task stopped",
            extra=fields(
                instance=instance,
                task=task.arn.rsplit("/", 1)[-1],
                service=task.service,
                why="service",
            ),
        )

    async def _deregister(self, groups: dict[str, list[LbTarget]], instance: str) -> None:
        for group, targets in groups.items():
            await self._groups.deregister(group, targets)
            self._metrics.targets_deregistered.inc(len(targets))
            log.info(
                "targets deregistered",
                extra=fields(
                    instance=instance,
                    target_group=group.rsplit("/", 2)[-2] if "/" in group else group,
                    targets=[f"{t.id}:{t.port}" for t in targets],
                ),
            )

    async def _wait_gone(
        self, groups: dict[str, list[LbTarget]], drain: DrainState, stop_timeout: float
    ) -> None:
        delay = max([await self._groups.delay(group) for group in groups], default=0.0)
        checks = [lambda g=g, t=t: self._groups.gone(g, t) for g, t in groups.items()]
        # The task still needs stopTimeout after StopTask; the cutoff may move earlier.
        outcome, waited = await wait_gone(
            checks,
            delay=delay,
            limit=lambda: drain.cutoff() - stop_timeout,
            poll=self._settings.ecs.target_poll_seconds,
        )
        left = outcome is WaitOutcome.UNUSED
        self._metrics.target_drain_wait.labels("left" if left else "cut_short").observe(waited)
        if not left:
            log.warning(
                "stopping a task whose targets are still draining: no time left",
                extra=fields(target_groups=len(groups), waited=round(waited, 3)),
            )
