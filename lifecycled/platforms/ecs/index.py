"""EC2 instance -> ECS container instance, across the configured (or every) cluster."""

from __future__ import annotations

import asyncio
import time

from lifecycled.clients.aws import AwsClients
from lifecycled.clients.aws.ecs import ContainerInstanceInfo
from lifecycled.model import InstanceId

MIN_RELIST_SECONDS = 1.0
TARGET_SEP = "|"


def target_of(cluster: str, container_instance_arn: str) -> str:
    """The platform's target string: `<cluster>|<container instance ARN>`."""
    return f"{cluster}{TARGET_SEP}{container_instance_arn}"


def split_target(target: str) -> tuple[str, str]:
    cluster, _, arn = target.partition(TARGET_SEP)
    if not arn:
        raise ValueError(f"not an ECS target: {target!r}")
    return cluster, arn


class ContainerInstanceIndex:
    """One listing of every cluster's container instances, refreshed when older than `max_age`
    or on a miss (at most once a second), as the Kubernetes node index does."""

    def __init__(self, aws: AwsClients, clusters: frozenset[str], max_age: float) -> None:
        self._aws = aws
        self._configured = sorted(clusters)
        self._max_age = max_age
        self._by_instance: dict[str, ContainerInstanceInfo] = {}
        self._clusters: list[str] = list(self._configured)
        self._listed_at = float("-inf")
        self._lock = asyncio.Lock()

    async def clusters(self) -> list[str]:
        if not self._configured and time.monotonic() - self._listed_at >= self._max_age:
            await self._refresh(self._max_age)
        return list(self._clusters)

    async def _refresh(self, min_age: float) -> None:
        async with self._lock:
            if time.monotonic() - self._listed_at < min_age:
                return  # someone refreshed while we waited
            clusters = self._configured or await self._aws.ecs.list_clusters()
            found: dict[str, ContainerInstanceInfo] = {}
            for cluster in clusters:
                arns = await self._aws.ecs.list_container_instances(cluster)
                for info in await self._aws.ecs.describe_container_instances(cluster, arns):
                    found[info.ec2_instance_id] = info
            self._clusters = list(clusters)
            self._by_instance = found
            self._listed_at = time.monotonic()

    async def find(self, instance_id: InstanceId) -> ContainerInstanceInfo | None:
        await self._refresh(self._max_age)
        if instance_id not in self._by_instance:
            await self._refresh(MIN_RELIST_SECONDS)
        return self._by_instance.get(instance_id)
