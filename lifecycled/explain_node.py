"""`lifecycled explain --node NAME [FILE]`: what a live run would do to one node.

Reads the cluster (and EC2 tags, when ownership is by tag; the lifecycle hook, when the
message has one) with the service's own settings (`LIFECYCLED_*`, `KUBECONFIG`, botocore's
chain); writes nothing. The action and deadline are the service's own planner's
(`lifecycled.plan`), so they are what a live run would record. Prints one JSON line:

    {"node", "instance_id", "ours", "why_not_ours", "notice" (the plain explain object, or
     null), "action", "deadline", "hook", "pods": [{"pod", "do", "why"}]}

`do` is `evict`, `wait` (a job waited for; or already terminating), `requeue` (a
non-idempotent job stopped and requeued once) or `skip` (with the reason). Without FILE a
Spot warning is assumed (deadline `--deadline-seconds`, default
`LIFECYCLED_SPOT_NOTICE_SECONDS`, from now). Exit 0; 1 when the node cannot be read or the
settings are invalid; 2 when the message is rejected.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime, timedelta

from lifecycled.clients.aws import AwsClients
from lifecycled.clients.kube import KubeClient
from lifecycled.errors import ConfigError, LifecycledError
from lifecycled.events import parse_message
from lifecycled.events.times import format_time
from lifecycled.explain import EXIT_PARSED, EXIT_UNREADABLE, explain
from lifecycled.lifecycle import LifecycleHooks
from lifecycled.model import Action, InstanceId, Notice, NoticeKind
from lifecycled.observe import Metrics
from lifecycled.ownership import Ownership
from lifecycled.plan import Facts, Need, Open, Rules, action_table, decide
from lifecycled.platforms.kubernetes import KubernetesPlatform, instance_id_of
from lifecycled.record import DrainRecord, HookRef
from lifecycled.settings import Settings, load_settings


def main_node(node: str, body: bytes | None, *, deadline_seconds: float | None = None) -> int:
    try:
        # explain consumes nothing and leads nothing: no queue URL, no Lease.
        settings = load_settings(source="imds", node_name=node, leader_election=False)
    except ConfigError as exc:
        print(f"lifecycled explain: invalid settings: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    notice_obj: dict[str, object] | None = None
    notice: Notice | None = None
    if body is not None:
        code, notice_obj = explain(
            body,
            allowed_accounts=settings.scope.allowed_accounts,
            region=settings.scope.region,
            actions=action_table(settings),
        )
        if code != EXIT_PARSED:
            print(json.dumps(notice_obj))
            return code
        parsed = parse_message(body)
        notice = parsed if isinstance(parsed, Notice) else None
    try:
        # Without a message a Spot warning is assumed; an ignored message asks for nothing.
        obj = asyncio.run(explain_node(node, notice, settings, deadline_seconds, body is None))
    except LifecycledError as exc:
        print(f"lifecycled explain: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    except Exception as exc:  # no region, no kubeconfig...: say so, no traceback
        print(f"lifecycled explain: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    obj["notice"] = notice_obj
    print(json.dumps(obj))
    return EXIT_PARSED


async def explain_node(
    node: str,
    notice: Notice | None,
    settings: Settings,
    deadline_seconds: float | None,
    assume_spot: bool = True,
) -> dict[str, object]:
    metrics = Metrics()
    async with (
        AwsClients.open(settings, metrics, ("ec2", "autoscaling")) as aws,
        KubeClient.open(
            metrics, settings.calls.timeout_seconds, settings.calls.retry_delays
        ) as kube,
    ):
        current = await kube.get_node(node)
        instance = instance_id_of(current)
        platform = KubernetesPlatform(kube, aws, settings, metrics)
        why = await _why_not_ours(node, instance, settings, aws, kube)
        instance_id = InstanceId(instance or node)
        if notice is None and assume_spot:
            notice = _spot_warning(instance_id, settings, deadline_seconds)
        hooks = LifecycleHooks(aws, settings, metrics)
        record = await _would_open(node, instance_id, notice, settings, hooks) if notice else None
        result: dict[str, object] = {
            "node": node,
            "instance_id": instance,
            "ours": why is None,
            "why_not_ours": why,
            "notice": None,
            "action": record.action.value if record else Action.NONE.value,
            "deadline": format_time(record.deadline) if record else None,
            "hook": _hook_line(record, settings) if record else None,
            "pods": [],
        }
        if why is None and record is not None and record.action is Action.DRAIN:
            result["pods"] = await platform.preview(node, record)
        return result


async def _why_not_ours(
    node: str, instance: str | None, settings: Settings, aws: AwsClients, kube: KubeClient
) -> str | None:
    if settings.scope.node_selector:
        selected = {
            n["metadata"]["name"] for n in await kube.list_nodes(settings.scope.node_selector)
        }
        if node not in selected:
            return f"node does not match {settings.scope.node_selector!r}"
    ownership = Ownership(aws, settings)
    if not ownership.enabled:
        return None
    if instance is None:
        return "node has no AWS providerID"
    return await ownership.why_not_ours(InstanceId(instance))


def _spot_warning(
    instance_id: InstanceId, settings: Settings, deadline_seconds: float | None
) -> Notice:
    """The notice assumed without a message: a Spot warning, now."""
    now = datetime.now(UTC)
    seconds = (
        deadline_seconds if deadline_seconds is not None else settings.drain.spot_notice_seconds
    )
    return Notice(
        kind=NoticeKind.SPOT_INTERRUPTION,
        instance_ids=(instance_id,),
        event_id="explain",
        event_time=now,
        deadline=now + timedelta(seconds=seconds),
    )


async def _would_open(
    node: str, instance_id: InstanceId, notice: Notice, settings: Settings, hooks: LifecycleHooks
) -> DrainRecord | None:
    """The drain the service would open for `notice`, by the service's own planner: no drain
    known, ownership judged apart (`ours`), no earlier drain to undo."""
    hook = await hooks.info(HookRef.of(notice.lifecycle)) if notice.lifecycle else None
    facts = Facts(notice, instance_id, looked_up=frozenset(Need), target=node, hook_info=hook)
    step = decide(facts, Rules.of(settings))
    return step.record if isinstance(step, Open) else None


def _hook_line(record: DrainRecord, settings: Settings) -> str | None:
    if record.hook is None:
        return None
    if settings.dry_run:
        return "left to its default result (dry run)"
    return "held with heartbeats, completed (CONTINUE) when the drain ends"
