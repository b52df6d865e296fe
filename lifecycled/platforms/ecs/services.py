"""Service tasks on a short deadline: take them out of their load balancers, then stop them.

Two minutes is too short to wait for ECS's own connection draining, so the order is ours:
DeregisterTargets -> DescribeTargetHealth until the target is `unused` (or not registered)
or the target group's deregistration delay ran out -> StopTask. The wait is cut short so that
the task's stopTimeout still fits before the drain's cutoff.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from typing import Generic, TypeVar

from lifecycled.clients.aws import AwsClients, EcsService, EcsTask, LbTarget, TaskDefinitionInfo
from lifecycled.errors import PermanentError
from lifecycled.observe import Metrics, fields
from lifecycled.platforms import DrainState
from lifecycled.settings import Settings

log = logging.getLogger(__name__)

K = TypeVar("K")
V = TypeVar("V")

GONE_STATES = frozenset({"unused"})  # `unused` + Target.NotRegistered: out of the group


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


class Cache(Generic[K, V]):
    """A small time-bounded cache (task definitions, services, target group delays)."""

    def __init__(self, max_age: float) -> None:
        self._max_age = max_age
        self._items: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> V | None:
        hit = self._items.get(key)
        if hit is None or time.monotonic() - hit[0] > self._max_age:
            return None
        return hit[1]

    def put(self, key: K, value: V) -> V:
        if len(self._items) > 1000:
            self._items.clear()
        self._items[key] = (time.monotonic(), value)
        return value


class ServiceTasks:
    def __init__(self, aws: AwsClients, settings: Settings, metrics: Metrics) -> None:
        self._aws = aws
        self._settings = settings
        self._metrics = metrics
        self._services: Cache[tuple[str, str], EcsService | None] = Cache(
            settings.node_cache_seconds
        )
        self._definitions: Cache[str, TaskDefinitionInfo] = Cache(float("inf"))
        self._delays: Cache[str, float] = Cache(settings.node_cache_seconds)

    async def service(self, cluster: str, name: str) -> EcsService | None:
        key = (cluster, name)
        cached = self._services.get(key)
        if cached is None:
            found = await self._aws.describe_services(cluster, [name])
            cached = self._services.put(key, found[0] if found else None)
        return cached

    async def definition(self, arn: str) -> TaskDefinitionInfo:
        cached = self._definitions.get(arn)
        if cached is None:
            cached = self._definitions.put(arn, await self._aws.describe_task_definition(arn))
        return cached

    async def is_daemon(self, cluster: str, task: EcsTask) -> bool:
        if task.service is None:
            return False
        if task.service in self._settings.ecs_daemon_services:
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
        await self._aws.stop_task(cluster, task.arn, f"lifecycled: {drain.record.kind}")
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
            try:
                await self._aws.deregister_targets(group, targets)
            except PermanentError as exc:
                if "InvalidTarget" not in str(exc):
                    raise
                # Not registered (any more): ECS, or an earlier attempt, was first.
            self._metrics.targets_deregistered.inc(len(targets))
            log.info(
                "targets deregistered",
                extra=fields(
                    instance=instance,
                    target_group=group.rsplit("/", 2)[-2] if "/" in group else group,
                    targets=[f"{t.id}:{t.port}" for t in targets],
                ),
            )

    async def _delay(self, group: str) -> float:
        cached = self._delays.get(group)
        if cached is None:
            cached = self._delays.put(group, await self._aws.deregistration_delay(group))
        return cached

    async def _wait_gone(
        self, groups: dict[str, list[LbTarget]], drain: DrainState, stop_timeout: float
    ) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        delay = max([await self._delay(group) for group in groups], default=0.0)
        poll = self._settings.ecs_target_poll_seconds
        pending = dict(groups)
        while pending:
            # The task still needs stopTimeout after StopTask; the cutoff may move earlier.
            until = min(started + delay + poll, drain.cutoff() - stop_timeout)
            for group, targets in list(pending.items()):
                states = await self._aws.target_states(group, targets)
                if all(states.get(t, "unused") in GONE_STATES for t in targets):
                    del pending[group]
            now = loop.time()
            if not pending or now >= until:
                break
            await asyncio.sleep(max(0.0, min(poll, until - now)))
        outcome = "cut_short" if pending else "left"
        self._metrics.target_drain_wait.labels(outcome).observe(loop.time() - started)
        if pending:
            log.warning(
                "stopping a task whose targets are still draining: no time left",
                extra=fields(target_groups=len(pending), waited=round(loop.time() - started, 3)),
            )
