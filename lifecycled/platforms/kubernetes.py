"""Kubernetes: find the node behind an instance, record intent, cordon, taint, evict.

Platform code never parses events; it is told which instance, until when, and acts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

from lifecycled import report
from lifecycled.clients.aws import AwsClients
from lifecycled.clients.checkpoint import CheckpointClient
from lifecycled.clients.kube import EvictionBlocked, EvictOutcome, JsonDict, KubeClient
from lifecycled.errors import ConflictError, NotFoundError, PermanentError, TemporaryError
from lifecycled.jobs import Decision, decide
from lifecycled.kube_events import EventRecorder, limits_of
from lifecycled.model import InstanceId
from lifecycled.observe import Metrics, fields
from lifecycled.pace import Evictions
from lifecycled.platforms import DrainState
from lifecycled.platforms.kube_jobs import JobRequeuer
from lifecycled.platforms.kube_lb import LoadBalancers, max_grace
from lifecycled.platforms.kube_notice import PodNotices
from lifecycled.platforms.kube_pods import PodRef, is_skipped, slim_pod
from lifecycled.platforms.kube_preview import preview_pods
from lifecycled.platforms.vacate import Items, Step, vacate_loop
from lifecycled.record import DRAINING_TAINT, RECORD_ANNOTATION, DrainRecord
from lifecycled.retry import retry
from lifecycled.settings import Settings

log = logging.getLogger(__name__)

# Set when the node was already cordoned by someone else: uncordoning is then not ours to do.
CORDONED_BEFORE_ANNOTATION = "lifecycled.io/cordoned-before"
HOSTNAME_LABEL = "kubernetes.io/hostname"
MIN_RELIST_SECONDS = 1.0
LISTS_AT_ONCE = 16  # drains' pod lists in flight together (each is parsed whole)


def instance_id_of(node: JsonDict) -> str | None:
    """`aws:///us-east-1a/i-0123...` -> `i-0123...`."""
    provider_id = str(node.get("spec", {}).get("providerID", ""))
    if not provider_id.startswith("aws://"):
        return None
    last = provider_id.rsplit("/", 1)[-1]
    return last if last.startswith("i-") else None


class NodeIndex:
    """instance id -> node name, from one node list refreshed on a miss (at most once a second)."""

    def __init__(
        self, kube: KubeClient, aws: AwsClients, max_age: float, selector: str | None = None
    ) -> None:
        self._kube = kube
        self._aws = aws
        self._max_age = max_age
        self._selector = selector  # LIFECYCLED_NODE_SELECTOR: other nodes are not ours
        self._by_instance: dict[str, str] = {}
        self._by_hostname: dict[str, str] = {}
        self._names: set[str] = set()
        self._nodes: dict[str, JsonDict] = {}  # name -> slim copy, for the first cordon try
        self._listed_at = float("-inf")
        self._lock = asyncio.Lock()

    def fresh(self, name: str) -> JsonDict | None:
        """The node as last listed or written, if that was within the cache age."""
        if time.monotonic() - self._listed_at >= self._max_age:
            return None
        return self._nodes.get(name)

    def remember(self, node: JsonDict) -> None:
        """A node as the API server just returned it (a patch's reply)."""
        name = str(node.get("metadata", {}).get("name", ""))
        if name in self._nodes:
            self._nodes[name] = slim(node)

    async def _refresh(self, min_age: float) -> None:
        async with self._lock:
            if time.monotonic() - self._listed_at < min_age:
                return  # someone refreshed while we waited
            by_instance: dict[str, str] = {}
            by_hostname: dict[str, str] = {}
            nodes: dict[str, JsonDict] = {}
            async for page in self._kube.node_pages(self._selector):
                for node in page:  # kept slim page by page: the full list is never held
                    name = str(node["metadata"]["name"])
                    nodes[name] = slim(node)
                    instance = instance_id_of(node)
                    if instance:
                        by_instance[instance] = name
                    hostname = node["metadata"].get("labels", {}).get(HOSTNAME_LABEL)
                    if hostname:
                        by_hostname[str(hostname)] = name
            self._by_instance, self._by_hostname, self._nodes = by_instance, by_hostname, nodes
            self._names = set(nodes)
            self._listed_at = time.monotonic()

    async def node_for(self, instance_id: InstanceId) -> str | None:
        await self._refresh(self._max_age)
        if instance_id not in self._by_instance:
            await self._refresh(MIN_RELIST_SECONDS)
        if instance_id in self._by_instance:
            return self._by_instance[instance_id]
        # Nodes without a providerID: match the instance's private DNS name instead.
        info = await self._aws.ec2.describe_instance(instance_id)
        if info is None or not info.private_dns_name:
            return None
        dns = info.private_dns_name
        for candidate in (dns, dns.split(".", 1)[0]):
            if candidate in self._names:
                return candidate
            if candidate in self._by_hostname:
                return self._by_hostname[candidate]
        return None


def slim(node: JsonDict) -> JsonDict:
    """What a cordon reads of a node (its version, labels, our annotations, cordon and
    taints): a storm keeps thousands of these, not thousands of full nodes."""
    metadata, spec = node.get("metadata", {}), node.get("spec", {})
    annotations = metadata.get("annotations") or {}
    return {
        "metadata": {
            "name": metadata.get("name"),
            "resourceVersion": metadata.get("resourceVersion"),
            "labels": dict(metadata.get("labels") or {}),
            "annotations": {k: v for k, v in annotations.items() if k.startswith("lifecycled.io/")},
        },
        "spec": {k: spec[k] for k in ("unschedulable", "taints", "providerID") if k in spec},
    }


def cordoned_by_others(node: JsonDict, key: str = DRAINING_TAINT) -> bool:
    spec = node.get("spec", {})
    ours = any(t.get("key") == key for t in spec.get("taints") or [])
    return bool(spec.get("unschedulable")) and not ours


def without_taint(node: JsonDict, key: str = DRAINING_TAINT) -> list[JsonDict]:
    """The node's taints less ours (the whole list again: taints have no merge strategy)."""
    taints: list[JsonDict] = list(node.get("spec", {}).get("taints") or [])
    return [t for t in taints if t.get("key") != key]


def with_taint(
    node: JsonDict, value: str, key: str = DRAINING_TAINT, effect: str = "NoSchedule"
) -> list[JsonDict]:
    """The node's taints plus ours: taints have no merge strategy, so we send the whole list.
    Key and effect: LIFECYCLED_TAINT_KEY, LIFECYCLED_TAINT_EFFECT."""
    taints: list[JsonDict] = list(node.get("spec", {}).get("taints") or [])
    if not any(t.get("key") == key for t in taints):
        taints.append({"key": key, "value": value, "effect": effect})
    return taints


def grace_for(setting: int | None, remaining: float) -> int | None:
    """LIFECYCLED_POD_GRACE_SECONDS capped by the seconds left to the deadline (at least 1:
    0 would be an immediate delete); None: the pod's own terminationGracePeriodSeconds."""
    if setting is None:
        return None
    return max(1, min(setting, int(remaining)))


class KubernetesPlatform:
    def __init__(
        self,
        kube: KubeClient,
        aws: AwsClients,
        settings: Settings,
        metrics: Metrics,
        checkpoints: CheckpointClient | None = None,
    ) -> None:
        self._kube = kube
        self._settings = settings
        self._metrics = metrics
        self._index = NodeIndex(
            kube, aws, settings.drain.node_cache_seconds, settings.scope.node_selector
        )
        self._evictions = Evictions(
            settings.drain.evictions_in_flight,
            settings.drain.eviction_settle_seconds,
            settings.drain.eviction_settle_max_seconds,
        )
        # Events wait while cordons are still coming: a storm's intake is CPU-bound on both
        # ends, and two Events a notice would be two requests beside each cordon.
        self.events = self._events = EventRecorder(
            kube.create_event,
            kube.patch_event,
            metrics,
            limits_of(settings),
            hold=self._evictions.quiet,
        )
        self._jobs = JobRequeuer(kube, aws, settings, metrics, self._events)
        self._balancers = LoadBalancers(kube, aws, settings, metrics)
        self._notices = PodNotices(kube, settings, metrics, self._events, checkpoints)
        self._listing = asyncio.Semaphore(LISTS_AT_ONCE)
        self._announcing = asyncio.Semaphore(LISTS_AT_ONCE)  # the first listings: `prepare`

    async def resolve(self, instance_id: InstanceId) -> str | None:
        return await self._index.node_for(instance_id)

    async def node_sample(self, limit: int) -> list[tuple[dict[str, str], str | None]]:
        """(labels, instance id) of up to `limit` of our nodes: whose cluster this is."""
        pages = self._kube.node_pages(self._settings.scope.node_selector)
        async with contextlib.aclosing(pages):
            async for page in pages:  # the first page is sample enough
                return [
                    (dict(n["metadata"].get("labels") or {}), instance_id_of(n))
                    for n in page[:limit]
                ]
        return []

    async def write_record(self, node: str, record: DrainRecord, *, cordon: bool) -> None:
        """Annotate (and cordon + taint) in one patch, guarded by the node's resourceVersion.
        A cordon's first try takes the node from the index (a storm's cordons cost one call
        each); a conflict reads it afresh. Later writes read it first: by then the index's
        copy is mostly stale (a 409 and a retry delay)."""
        tries = 0

        async def attempt() -> None:
            nonlocal tries
            tries += 1
            cached = self._index.fresh(node) if tries == 1 and cordon else None
            current = cached or await self._kube.get_node(node)
            patch: JsonDict = {
                "metadata": {
                    "resourceVersion": current["metadata"].get("resourceVersion"),
                    "annotations": {RECORD_ANNOTATION: record.to_json()},
                }
            }
            if cordon:
                drain = self._settings.drain
                taints = with_taint(current, record.kind, drain.taint_key, drain.taint_effect)
                patch["spec"] = {"unschedulable": True, "taints": taints}
                if cordoned_by_others(current, drain.taint_key):
                    patch["metadata"]["annotations"][CORDONED_BEFORE_ANNOTATION] = "true"
                self._balancers.exclude(current, record, patch)
            self._index.remember(await self._kube.patch_node(node, patch))

        await retry(
            attempt,
            delays=self._settings.calls.retry_delays,
            what=f"record drain on {node}",
            on=ConflictError,
        )
        if cordon:
            self._evictions.opened()  # more cordons may follow: evictions wait for them

    async def uncordon(self, node: str, record: DrainRecord) -> None:
        """Our taint off, the cordon lifted unless it was there before us, `record` written: one
        patch guarded by the node's resourceVersion; other taints are kept. The node goes
        back into the load balancers this drain took it out of, and loses the exclude label
        if we put it there."""
        await self._balancers.give_back(node)

        async def attempt() -> None:
            current = await self._kube.get_node(node)
            metadata = current["metadata"]
            patch: JsonDict = {
                "metadata": {
                    "resourceVersion": metadata.get("resourceVersion"),
                    "annotations": {
                        RECORD_ANNOTATION: record.to_json(),
                        CORDONED_BEFORE_ANNOTATION: None,
                    },
                },
                "spec": {"taints": without_taint(current, self._settings.drain.taint_key)},
            }
            if CORDONED_BEFORE_ANNOTATION not in (metadata.get("annotations") or {}):
                patch["spec"]["unschedulable"] = None
            self._balancers.include(current, patch)
            await self._kube.patch_node(node, patch)

        await retry(
            attempt,
            delays=self._settings.calls.retry_delays,
            what=f"uncordon {node}",
            on=ConflictError,
        )

    async def preview(self, node: str, record: DrainRecord) -> list[dict[str, str]]:
        """What `vacate` would do to each pod now (dry run, explain); reads only."""
        remaining = (record.deadline - datetime.now(UTC)).total_seconds()
        return await preview_pods(
            await self._list_pods(node),
            self._jobs,
            remaining=remaining,
            stop_lead=self._settings.jobs.stop_lead_seconds,
        )

    async def ready(self, node: str) -> bool:
        try:
            current = await self._kube.get_node(node)
        except NotFoundError:
            return False
        conditions = current.get("status", {}).get("conditions") or []
        is_ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        return is_ready and not current.get("spec", {}).get("unschedulable", False)

    async def open_records(self) -> list[tuple[str, DrainRecord]]:
        found: list[tuple[str, DrainRecord]] = []
        for node in await self._kube.list_nodes():
            text = node["metadata"].get("annotations", {}).get(RECORD_ANNOTATION)
            if not text:
                continue
            name = str(node["metadata"]["name"])
            try:
                found.append((name, DrainRecord.from_json(text)))
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("unreadable drain record", extra=fields(node=name, error=str(exc)))
        return found

    async def vacate(self, node: str, drain: DrainState) -> bool:
        """Move every pod that must go off the node (`_Pods`); True once they are all gone.
        The deadline may move earlier while we work (a tighter notice)."""
        pods = _Pods(
            node,
            drain,
            kube=self._kube,
            jobs=self._jobs,
            balancers=self._balancers,
            events=self._events,
            metrics=self._metrics,
            settings=self._settings,
            evictions=self._evictions,
            listing=self._listing,
            announcing=self._announcing,
            notices=self._notices,
        )
        await pods.prepare()
        return await vacate_loop(
            pods,
            drain,
            poll=self._settings.drain.poll_seconds,
            retry_delays=self._settings.calls.retry_delays,
            metrics=self._metrics,
        )

    async def _list_pods(self, node: str) -> list[JsonDict]:
        return await self._kube.list_pods_on_node(node)  # the client retries


@dataclass(frozen=True, slots=True)
class _PodStep:
    """A planned pod's step (`_Pods.act`): one small object, not a chain of partials and a
    PodRef; a storm's drains hold 19,000 of them while they wait for eviction slots."""

    pods: _Pods
    pod: JsonDict
    requeue: bool

    def __call__(self) -> Awaitable[None]:
        return self.pods.act(self.pod, self.requeue)


class _Pods(Items[JsonDict]):
    """A node's pods for the vacate loop, and one vacate's bookkeeping: when each pod may be
    tried again, and since when each job has been waited for."""

    noun = "pod"
    overlap = False  # evictions and requeues are a few calls; a requeue must not be cut off
    # Steps at once per node, a waiting task each: the cluster-wide cap is `Evictions`.
    parallel = 4

    def __init__(
        self,
        node: str,
        drain: DrainState,
        *,
        kube: KubeClient,
        jobs: JobRequeuer,
        balancers: LoadBalancers,
        events: EventRecorder,
        metrics: Metrics,
        settings: Settings,
        evictions: Evictions,
        listing: asyncio.Semaphore,
        announcing: asyncio.Semaphore,
        notices: PodNotices,
    ) -> None:
        self.where: dict[str, object] = {"node": node}
        self._node = node
        self._drain = drain
        self._kube = kube
        self._jobs = jobs
        self._balancers = balancers
        self._events = events
        self._metrics = metrics
        self._settings = settings
        self._next_try: dict[str, float] = {}  # pod uid -> loop time
        self._waiting: dict[str, tuple[float, str]] = {}  # uid -> (since, pod)
        self._hold_reported = False
        self._evictions = evictions
        self._listing = listing
        self._announcing = announcing
        self._notices = notices
        self._opened_at = asyncio.get_running_loop().time()
        self._out_of_balancers = False

    def key(self, pod: JsonDict) -> str:
        return PodRef.of(pod).uid

    def label(self, pod: JsonDict) -> str:
        return f"{pod['metadata'].get('namespace')}/{pod['metadata']['name']}"

    async def prepare(self) -> None:
        """Before the passes, outside any turn: wait for a storm's cordons to settle, tell the
        pods their deadline, take the node out of its load balancers. A storm's drains do it
        LISTS_AT_ONCE at a time and keep nothing of it; a failed listing leaves it to the
        first pass."""
        # Cordon every doomed node before evicting from any: a pod evicted now would be
        # rescheduled onto a node whose warning is a moment behind.
        waited = await self._evictions.settled(self._opened_at, self._drain.cutoff())
        self._metrics.eviction_wait.labels("settle").observe(waited)
        try:
            async with self._announcing:
                pods = await self._listed()
                await self._notices.announce(self._node, self._drain.record, pods)
                grace = max_grace(pods)  # all the load balancers' wait needs of them
        except TemporaryError as exc:
            log.warning(
                "could not list the node's pods before its drain; its first pass will",
                extra=fields(node=self._node, error=str(exc)),
            )
            return
        del pods
        await self._take_out(grace)

    def turn(self) -> contextlib.AbstractAsyncContextManager[None]:
        return self._evictions.turn(self._drain.record.deadline.timestamp(), self._drain.cutoff())

    async def left(self) -> list[JsonDict]:
        async with self._listing:  # a storm's drains do not all parse their lists at once
            left = await self._listed()
        await self._notices.announce(self._node, self._drain.record, left)  # deadline first
        return left

    async def _listed(self) -> list[JsonDict]:
        """The pods that must go, slim: the whole listing is dropped on return."""
        pods = await self._kube.list_pods_on_node(self._node)  # the client retries
        return [slim_pod(p) for p in pods if not is_skipped(p)]

    async def first_listing(self, pods: list[JsonDict]) -> bool:
        """Load balancers first: no eviction until the node is out of them (done once, by
        `prepare` unless its listing failed)."""
        if self._out_of_balancers:
            return False
        return await self._take_out(max_grace(pods))

    async def _take_out(self, grace: float) -> bool:
        self._out_of_balancers = True
        waited = await self._balancers.take_out(self._node, self._drain, grace)
        if waited:
            self._events.node(self._node, report.LB_LEFT, "out of its load balancers; evicting")
        return waited

    def seen(self, pods: list[JsonDict]) -> None:
        """Waited-for jobs no longer listed have finished."""
        present = {PodRef.of(p).uid for p in pods}
        self._drain.progress.left = [self.label(p) for p in pods]
        now = asyncio.get_running_loop().time()
        for uid in [u for u in self._waiting if u not in present]:
            since, pod = self._waiting.pop(uid)
            self._metrics.jobs_waited.observe(now - since)
            log.info(
                "waited-for job finished",
                extra=fields(node=self._node, pod=pod, seconds=round(now - since, 3)),
            )

    async def decide(self, pod: JsonDict) -> Step | None:
        """`jobs.decide`: services are evicted at once; jobs are waited for while the deadline
        is far, and evicted (idempotent) or requeued (not) when it is near."""
        ref = PodRef.of(pod)
        now = asyncio.get_running_loop().time()
        if self._next_try.get(ref.uid, 0.0) > now:
            return None
        if ref.terminating:
            # Already going (a NoExecute taint, someone's delete): the only thing left to give
            # is a shorter grace (LIFECYCLED_POD_GRACE_SECONDS), once; it cannot be lengthened.
            shorten = self._settings.drain.pod_grace_seconds is not None
            return partial(self._evict, ref) if shorten else None
        workload = await self._jobs.workload(pod)
        decision = decide(
            workload,
            remaining=self._drain.remaining(),
            stop_lead=self._settings.jobs.stop_lead_seconds,
        )
        if decision is Decision.WAIT:
            if ref.uid not in self._waiting:
                self._waiting[ref.uid] = (now, f"{ref.namespace}/{ref.name}")
                self._events.post(pod, report.WAITING, f"waited for: {self._deadline()}")
                log.info(
                    "waiting for a job to finish",
                    extra=fields(
                        node=self._node,
                        pod=f"{ref.namespace}/{ref.name}",
                        deadline=self._drain.record.deadline.isoformat(),
                    ),
                )
            return None
        return _PodStep(self, pod, requeue=decision is Decision.REQUEUE)

    async def act(self, pod: JsonDict, requeue: bool) -> None:
        """The pod's checkpoint call (if it asks for one), then its eviction or requeue."""
        await self._notices.checkpoint(pod, self._node, self._drain)
        if requeue:
            await self._requeue(pod)
        else:
            await self._evict(PodRef.of(pod))

    async def acting(self, pods: list[JsonDict]) -> None:
        stopping_waited = [p for p in pods if PodRef.of(p).uid in self._waiting]
        if stopping_waited and not self._hold_reported:
            self._hold_reported = True
            await self._hold_exceeded(len(stopping_waited))

    async def _requeue(self, pod: JsonDict) -> None:
        ref = PodRef.of(pod)
        try:
            requeued = await self._jobs.requeue(pod, self._node, self._drain.record.kind)
        except (TemporaryError, PermanentError) as exc:
            log.error(
                "requeue failed; will retry",
                extra=fields(node=self._node, pod=f"{ref.namespace}/{ref.name}", error=str(exc)),
            )
            self._next_try[ref.uid] = asyncio.get_running_loop().time() + 1.0
            return
        if requeued:
            self._events.post(pod, report.POD_REQUEUED, f"requeued: {self._deadline()}")
            self._next_try[ref.uid] = float("inf")  # its stop is under way; wait for it to go
        else:
            await self._evict(ref)

    async def _hold_exceeded(self, jobs: int) -> None:
        node, record = self._node, self._drain.record
        self._metrics.hold_exceeded.inc()
        log.error(
            "jobs still running as the drain's deadline nears; stopping them",
            extra=fields(
                node=node,
                instance=record.instance_id,
                jobs=jobs,
                deadline=record.deadline.isoformat(),
            ),
        )
        node_obj = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node, "uid": node}}
        await self._events.emit(
            node_obj,
            "HoldExceeded",
            f"{jobs} job(s) still running near the drain deadline "
            f"{record.deadline.isoformat()}; requeueing or evicting",
            warning=True,
        )

    async def _evict(self, pod: PodRef) -> None:
        loop = asyncio.get_running_loop()
        where = fields(node=self._node, pod=f"{pod.namespace}/{pod.name}")
        self._events.post(
            pod.involved(), report.EVICTING, f"about to be evicted: {self._deadline()}"
        )
        try:
            queued = loop.time()
            async with self._evictions.slot(self._drain.record.deadline.timestamp()):
                self._metrics.eviction_wait.labels("slot").observe(loop.time() - queued)
                grace = grace_for(self._settings.drain.pod_grace_seconds, self._drain.remaining())
                outcome = await self._kube.evict(pod.namespace, pod.name, grace_seconds=grace)
        except EvictionBlocked as exc:
            self._metrics.evictions.labels("blocked_by_budget").inc()
            self._events.node(self._node, report.EVICTION_BLOCKED, f"PDB refused evicting {pod}")
            log.info("eviction refused by disruption budget; will retry", extra=where)
            delay = exc.delay or self._settings.drain.eviction_retry_seconds
            self._next_try[pod.uid] = loop.time() + delay
            return
        except (TemporaryError, PermanentError) as exc:
            self._metrics.evictions.labels("error").inc()
            log.warning(
                "eviction failed; will retry",
                extra=fields(node=self._node, pod=f"{pod.namespace}/{pod.name}", error=str(exc)),
            )
            self._next_try[pod.uid] = loop.time() + self._settings.drain.eviction_retry_seconds
            return
        self._metrics.evictions.labels(outcome.value).inc()
        # Evicted pods terminate over their grace period; we wait for them to be gone.
        self._next_try[pod.uid] = float("inf")
        if outcome is EvictOutcome.EVICTED:
            self._drain.progress.evicted += 1
            log.info("pod evicted", extra=where)

    def _deadline(self) -> str:
        return f"node {self._node} drains by {self._drain.record.deadline.isoformat()}"
