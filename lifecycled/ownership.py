"""Is an instance this cluster's? By an EC2 tag (both platforms) before anything is done.

The platform's own resolution (a node that matches `LIFECYCLED_NODE_SELECTOR`, a container
instance in `LIFECYCLED_ECS_CLUSTERS`) is the second half of the answer; the coordinator asks
both. Without `owner_tag` and `cluster_name` there is no tag check.
"""

from __future__ import annotations

import asyncio
import time

from lifecycled.clients.aws import AwsClients
from lifecycled.clients.aws.ec2 import InstanceInfo
from lifecycled.errors import NotFoundError
from lifecycled.model import InstanceId
from lifecycled.settings import Settings

EKS_CLUSTER_TAG = "aws:eks:cluster-name"
BATCH = 200  # instance ids per DescribeInstances (the API takes up to 1,000)
LINGER_SECONDS = 0.02  # how long a lookup waits for others to share its call
KUBERNETES_CLUSTER_TAG = "kubernetes.io/cluster/"


def tag_rule(settings: Settings) -> tuple[tuple[str, str | None], ...]:
    """(key, value or None for "any value") pairs; an instance is ours if it has one."""
    if settings.scope.owner_tag:
        key, sep, value = settings.scope.owner_tag.partition("=")
        return ((key.strip(), value.strip() if sep else None),)
    if settings.scope.cluster_name:
        name = settings.scope.cluster_name
        return ((KUBERNETES_CLUSTER_TAG + name, None), (EKS_CLUSTER_TAG, name))
    return ()


def has_owner_tag(tags: dict[str, str], rule: tuple[tuple[str, str | None], ...]) -> bool:
    return any(key in tags and (value is None or tags[key] == value) for key, value in rule)


def describe_rule(rule: tuple[tuple[str, str | None], ...]) -> str:
    return " or ".join(key if value is None else f"{key}={value}" for key, value in rule)


class Ownership:
    """Tag checks, each instance's tags read once per `node_cache_seconds`."""

    def __init__(self, aws: AwsClients, settings: Settings) -> None:
        self._aws = aws
        self._rule = tag_rule(settings)
        self._max_age = max(settings.drain.node_cache_seconds, 1.0)
        self._tags: dict[InstanceId, tuple[float, InstanceInfo | None]] = {}
        # A storm asks about hundreds of instances at once: one call for all of them.
        self._pending: dict[InstanceId, asyncio.Future[InstanceInfo | None]] = {}
        self._flush: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task[None]] = set()

    @property
    def enabled(self) -> bool:
        return bool(self._rule)

    async def why_not_ours(self, instance_id: InstanceId) -> str | None:
        """None when the instance carries our tag (or no tag is required); else the reason."""
        if not self._rule:
            return None
        info = await self._describe(instance_id)
        if info is None:
            return "instance unknown to EC2 here"
        if has_owner_tag(info.tags, self._rule):
            return None
        return f"instance lacks tag {describe_rule(self._rule)}"

    async def _describe(self, instance_id: InstanceId) -> InstanceInfo | None:
        now = time.monotonic()
        cached = self._tags.get(instance_id)
        if cached is not None and now - cached[0] < self._max_age:
            return cached[1]
        if len(self._tags) > 10_000:
            self._tags.clear()
        info = await self._look_up(instance_id)
        self._tags[instance_id] = (now, info)
        return info

    async def _look_up(self, instance_id: InstanceId) -> InstanceInfo | None:
        future = self._pending.get(instance_id)
        if future is None:
            loop = asyncio.get_running_loop()
            future = self._pending[instance_id] = loop.create_future()
            if len(self._pending) >= BATCH:
                self._send()
            elif self._flush is None:
                self._flush = loop.call_later(LINGER_SECONDS, self._send)
        return await asyncio.shield(future)

    def _send(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        batch, self._pending = self._pending, {}
        if batch:
            task = asyncio.create_task(self._describe_all(batch), name="describe-instances")
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _describe_all(
        self, batch: dict[InstanceId, asyncio.Future[InstanceInfo | None]]
    ) -> None:
        ec2 = self._aws.ec2
        try:
            try:
                found = await ec2.describe_instances(list(batch))
            except NotFoundError:  # one unknown id fails the call: ask one by one
                infos = await asyncio.gather(*(ec2.describe_instance(i) for i in batch))
                found = {i: info for i, info in zip(batch, infos, strict=True) if info}
        except Exception as exc:
            for future in batch.values():
                if not future.done():
                    future.set_exception(exc)
            return
        for instance_id, future in batch.items():
            if not future.done():
                future.set_result(found.get(instance_id))
