"""Load balancers first: take a draining node out of its load balancers before its pods go.

Pods are evicted within seconds, but a load balancer keeps sending requests to the node
until its health checks fail (minutes) — requests fail in between. So, at the start of a
drain: label the node `node.kubernetes.io/exclude-from-external-load-balancers` (with the
cordon, in the same patch), `DeregisterTargets` it from every configured target group it is
registered in as an instance target (and from configured Classic ELBs), then hold the first
eviction until its targets are `unused` or the deregistration delay has passed — never so
long that the pods' grace periods no longer fit before the drain's deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial

from lifecycled.clients.aws import AwsClients
from lifecycled.clients.aws.elbv2 import LbTarget, TargetGroupInfo
from lifecycled.clients.kube import JsonDict, KubeClient
from lifecycled.errors import NotFoundError, PermanentError, TemporaryError
from lifecycled.model import Action
from lifecycled.observe import Metrics, fields
from lifecycled.platforms import DrainState
from lifecycled.platforms.targets import Cache, TargetGroups, wait_gone
from lifecycled.record import PREFIX, DrainRecord
from lifecycled.settings import Settings

log = logging.getLogger(__name__)

EXCLUDE_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"
# We put the exclude label on: uncordoning takes it off again (and only then).
EXCLUDED_ANNOTATION = PREFIX + "lb-excluded"
# Where the node was deregistered, written before deregistering: a cancelled drain puts it
# back there.
DEREGISTERED_ANNOTATION = PREFIX + "lb-deregistered"
DEFAULT_GRACE_SECONDS = 30.0  # terminationGracePeriodSeconds when a pod does not say
LEAVING_STATES = frozenset({"draining", "unused"})


def max_grace(pods: list[JsonDict]) -> float:
    """The longest terminationGracePeriodSeconds among the pods to evict (0 when none)."""
    graces = [pod.get("spec", {}).get("terminationGracePeriodSeconds") for pod in pods]
    return max((DEFAULT_GRACE_SECONDS if g is None else float(g) for g in graces), default=0.0)


def matches(tags: dict[str, str], wanted: dict[str, str | None]) -> bool:
    """Every wanted tag is there (a None value: any value)."""
    return all(k in tags and (v is None or tags[k] == v) for k, v in wanted.items())


@dataclass
class Membership:
    """Where the instance is registered: target group -> its targets there (with their
    state), and Classic ELB names. Also the node annotation that remembers it."""

    instance: str
    target_groups: dict[str, dict[LbTarget, str]] = field(default_factory=dict)
    classic: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.target_groups or self.classic)

    def to_json(self) -> str:
        groups = {
            arn: sorted(t.port for t in targets) for arn, targets in self.target_groups.items()
        }
        data = {"instance": self.instance, "target_groups": groups, "classic": self.classic}
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Membership:
        data = json.loads(text)
        instance = str(data["instance"])
        groups = {
            str(arn): {LbTarget(instance, int(port)): "unused" for port in ports}
            for arn, ports in data.get("target_groups", {}).items()
        }
        return cls(instance, groups, [str(name) for name in data.get("classic", [])])

    def merged(self, earlier: Membership) -> Membership:
        """This one plus what an earlier attempt of the same drain took out."""
        groups = {arn: dict(targets) for arn, targets in earlier.target_groups.items()}
        for arn, targets in self.target_groups.items():
            groups.setdefault(arn, {}).update(targets)
        classic = sorted(set(earlier.classic) | set(self.classic))
        return Membership(self.instance, groups, classic)


class LoadBalancers:
    def __init__(
        self, kube: KubeClient, aws: AwsClients, settings: Settings, metrics: Metrics
    ) -> None:
        self._kube = kube
        self._aws = aws
        self._settings = settings
        self._metrics = metrics
        self._groups = TargetGroups(aws, settings.lb.cache_seconds)
        self._searched: Cache[str, list[str]] = Cache(settings.lb.cache_seconds)
        self._classic_delays: Cache[str, float] = Cache(settings.lb.cache_seconds)

    @property
    def enabled(self) -> bool:
        return self._settings.lb.target_groups_configured or bool(self._settings.lb.classic_names)

    # --- the label (part of the cordon patch) ----------------------------------------------

    def exclude(self, current: JsonDict, record: DrainRecord, patch: JsonDict) -> None:
        """Add the exclude label to a drain's cordon patch, remembering that we added it.
        Cordon-only notices (a rebalance recommendation) leave the node in service."""
        if not self._settings.lb.exclude_label or record.action is not Action.DRAIN:
            return
        if EXCLUDE_LABEL in (current["metadata"].get("labels") or {}):
            return  # someone else's (or ours from an earlier drain: its annotation stays)
        patch["metadata"].setdefault("labels", {})[EXCLUDE_LABEL] = "true"
        patch["metadata"].setdefault("annotations", {})[EXCLUDED_ANNOTATION] = "true"

    @staticmethod
    def include(current: JsonDict, patch: JsonDict) -> None:
        """Undo `exclude` in an uncordon patch: the label goes only if we put it there."""
        annotations = current["metadata"].get("annotations") or {}
        ours = patch["metadata"].setdefault("annotations", {})
        ours[EXCLUDED_ANNOTATION] = None
        ours[DEREGISTERED_ANNOTATION] = None
        if EXCLUDED_ANNOTATION in annotations:
            patch["metadata"].setdefault("labels", {})[EXCLUDE_LABEL] = None

    # --- deregistration, before the first eviction -----------------------------------------

    async def take_out(self, node: str, drain: DrainState, grace: float) -> bool:
        """Deregister the node's instance and wait until it left (within bounds). True when
        it was registered somewhere (time passed); errors are logged, never raised: the
        evictions must go on."""
        if not self.enabled:
            return False
        loop = asyncio.get_running_loop()
        hard_end = loop.time() + self._settings.lb.max_wait_seconds

        def limit() -> float:
            # Evictions must start early enough for every pod's grace period to fit.
            return min(drain.cutoff() - grace, hard_end)

        instance = drain.record.instance_id
        try:
            # Finding and deregistering gets at least one API timeout, even with no time left.
            budget = max(limit(), loop.time() + self._settings.calls.timeout_seconds)
            async with asyncio.timeout_at(budget):
                found = await self._deregister(node, instance)
            if not found:
                return False
            await self._wait(node, found, limit)
        except (TemporaryError, PermanentError, TimeoutError) as exc:
            self._metrics.lb_errors.inc()
            log.error(
                "could not take the node out of its load balancers; evicting anyway",
                extra=fields(node=node, instance=instance, error=str(exc) or type(exc).__name__),
            )
        return True

    async def _deregister(self, node: str, instance: str) -> Membership:
        found = await self.membership(instance)
        if not found:
            log.info("node is in no load balancer", extra=fields(node=node, instance=instance))
            return found
        await self._remember(node, found)
        for arn, targets in found.target_groups.items():
            registered = [t for t, state in targets.items() if state not in LEAVING_STATES]
            if registered:  # draining ones are on their way out (a resumed drain)
                await self._groups.deregister(arn, registered)
                self._metrics.lb_deregistrations.labels("target_group").inc()
        for name in found.classic:
            await self._aws.elb.deregister_from_classic(name, instance)
            self._metrics.lb_deregistrations.labels("classic").inc()
        log.info(
            "node deregistered from its load balancers",
            extra=fields(
                node=node,
                instance=instance,
                target_groups=[_short(arn) for arn in found.target_groups],
                classic=found.classic,
            ),
        )
        return found

    async def _wait(self, node: str, found: Membership, limit: Callable[[], float]) -> None:
        checks: list[Callable[[], Awaitable[bool]]] = []
        delays: list[float] = []
        for arn, targets in found.target_groups.items():
            checks.append(partial(self._groups.gone, arn, list(targets)))
            delays.append(await self._groups.delay(arn))
        for name in found.classic:
            checks.append(partial(self._classic_gone, name, found.instance))
            delays.append(await self._classic_delay(name))
        outcome, waited = await wait_gone(
            checks, delay=max(delays), limit=limit, poll=self._settings.lb.poll_seconds
        )
        self._metrics.lb_wait.labels(outcome).observe(waited)
        log.info(
            "load balancer wait over; evicting",
            extra=fields(node=node, outcome=outcome, seconds=round(waited, 3)),
        )

    async def _classic_gone(self, name: str, instance: str) -> bool:
        # A classic ELB reports a draining instance as InService until its connections end.
        return await self._aws.elb.classic_instance_state(name, instance) != "InService"

    async def _classic_delay(self, name: str) -> float:
        cached = self._classic_delays.get(name)
        if cached is None:
            timeout = await self._aws.elb.classic_draining_timeout(name)
            cached = self._classic_delays.put(name, timeout)
        return cached

    async def _remember(self, node: str, found: Membership) -> None:
        """Write where we deregister the node before doing it, merged with what an earlier
        attempt of this drain (before a restart) already took out."""
        current = await self._kube.get_node(node)
        earlier = (current["metadata"].get("annotations") or {}).get(DEREGISTERED_ANNOTATION)
        if earlier:
            with contextlib.suppress(ValueError, KeyError, TypeError):  # unreadable: ours wins
                found = found.merged(Membership.from_json(earlier))
        patch = {"metadata": {"annotations": {DEREGISTERED_ANNOTATION: found.to_json()}}}
        await self._kube.patch_node(node, patch)

    # --- where the instance is registered --------------------------------------------------

    async def membership(self, instance: str) -> Membership:
        found = Membership(instance)
        if self._settings.lb.target_groups_configured:
            arns = await self._groups_to_search()
            # One DescribeTargetHealth per group, at once: a Spot warning leaves two minutes.
            listed = await asyncio.gather(*(self._targets_in(arn, instance) for arn in arns))
            found.target_groups = {
                arn: targets for arn, targets in zip(arns, listed, strict=True) if targets
            }
        if self._settings.lb.classic_names:
            names = sorted(self._settings.lb.classic_names)
            members = await self._aws.elb.classic_instances(names)
            found.classic = [name for name in names if instance in members.get(name, [])]
        return found

    async def _targets_in(self, arn: str, instance: str) -> dict[LbTarget, str]:
        try:
            states = await self._aws.elbv2.target_states(arn)
        except NotFoundError:
            return {}  # deleted since we listed it
        return {target: state for target, state in states.items() if target.id == instance}

    async def _groups_to_search(self) -> list[str]:
        """Instance-type target groups named by ARN or picked by tags (cached)."""
        cached = self._searched.get("groups")
        if cached is not None:
            return cached
        described = await self._describe_named(sorted(self._settings.lb.target_groups))
        wanted = self._settings.lb.target_group_tags
        if wanted:
            every = await self._aws.elbv2.describe_target_groups()
            tags = await self._aws.elbv2.target_group_tags([g.arn for g in every])
            described += [g for g in every if matches(tags.get(g.arn, {}), wanted)]
        arns = sorted({g.arn for g in described if g.target_type == "instance"})
        skipped = sorted({_short(g.arn) for g in described if g.target_type != "instance"})
        if skipped:
            log.info("target groups without instance targets skipped", extra=fields(groups=skipped))
        return self._searched.put("groups", arns)

    async def _describe_named(self, arns: list[str]) -> list[TargetGroupInfo]:
        if not arns:
            return []
        try:
            return await self._aws.elbv2.describe_target_groups(arns)
        except NotFoundError:
            pass  # one of them is gone: find which
        found = []
        for arn in arns:
            try:
                found += await self._aws.elbv2.describe_target_groups([arn])
            except NotFoundError:
                log.error("configured target group not found", extra=fields(target_group=arn))
        return found

    # --- a cancelled drain -----------------------------------------------------------------

    async def give_back(self, node: str) -> None:
        """Register the node again where this drain took it out (best effort: the group may
        be gone, or its controller may re-register the node itself once the label is off)."""
        try:
            current = await self._kube.get_node(node)
        except (TemporaryError, PermanentError) as exc:
            log.warning("could not read the node", extra=fields(node=node, error=str(exc)))
            return
        text = (current["metadata"].get("annotations") or {}).get(DEREGISTERED_ANNOTATION)
        if not text:
            return
        taken = Membership.from_json(text)
        for arn, targets in taken.target_groups.items():
            await self._put_back(
                "target_group", arn, self._aws.elbv2.register_targets(arn, [*targets])
            )
        for name in taken.classic:
            register = self._aws.elb.register_with_classic(name, taken.instance)
            await self._put_back("classic", name, register)

    async def _put_back(self, kind: str, where: str, call: Awaitable[None]) -> None:
        try:
            await call
        except (TemporaryError, PermanentError, KeyError) as exc:  # KeyError: client not open
            self._metrics.lb_errors.inc()
            log.warning(
                "could not register the node again",
                extra=fields(load_balancer=_short(where), error=str(exc)),
            )
            return
        self._metrics.lb_registrations.labels(kind).inc()
        log.info("node registered again", extra=fields(kind=kind, load_balancer=_short(where)))


def _short(arn: str) -> str:
    """`arn:...:targetgroup/web/0123abcd` -> `web` (a Classic ELB name stays as it is)."""
    return arn.rsplit("/", 2)[-2] if arn.count("/") >= 2 else arn
