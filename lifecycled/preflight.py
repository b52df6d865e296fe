"""`lifecycled check`: a read-only preflight of the configured mode's surroundings.

Each check is one `Check` (ok / warn / fail, what was found, the fix). Nothing here writes:
only reads (STS, SQS attributes, EventBridge rules, Auto Scaling hooks, a DescribeInstances,
SelfSubjectAccessReviews, an IMDS token). The checks that only `check` makes
(events:ListRuleNamesByTarget, events:DescribeRule, autoscaling:DescribeAutoScalingGroups)
are not in the service's policy: without them those lines fail naming the permission, and
the other checks still run.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from lifecycled.clients.aws import AwsClients, region_known
from lifecycled.clients.imds import ImdsClient
from lifecycled.clients.kube import KubeClient
from lifecycled.errors import LifecycledError
from lifecycled.observe import Metrics
from lifecycled.rules import EVENT_RULES, EventRule
from lifecycled.settings import Settings

Status = Literal["ok", "warn", "fail"]
EXIT_OK, EXIT_FAILED = 0, 1

# Every Kubernetes verb the service uses (docs/configuration.md, "Kubernetes RBAC"):
# (verb, group, resource, subresource).
RBAC = (
    ("get", "", "nodes", ""),
    ("list", "", "nodes", ""),
    ("patch", "", "nodes", ""),
    ("list", "", "pods", ""),
    ("patch", "", "pods", ""),  # the interruption-deadline annotations
    ("create", "", "pods", "eviction"),
    ("get", "batch", "jobs", ""),
    ("create", "", "events", ""),
    ("patch", "", "events", ""),
)
# Only with requeueing on (LIFECYCLED_REQUEUE_ENABLED); in LIFECYCLED_REQUEUE_NAMESPACES only,
# when set (the chart's Role in each).
RBAC_REQUEUE = (
    ("patch", "batch", "jobs", ""),
    ("create", "batch", "jobs", ""),
    ("get", "", "pods", ""),
    ("create", "", "pods", ""),
    ("delete", "", "pods", ""),
)
RBAC_LEASE = (
    ("get", "coordination.k8s.io", "leases", ""),
    ("create", "coordination.k8s.io", "leases", ""),
    ("update", "coordination.k8s.io", "leases", ""),
)
# A rule the launch hooks need is only a warning: without launch hooks it is not needed.
OPTIONAL_RULES = frozenset({"lifecycled-asg-launch-hook"})
MIN_HEARTBEAT_SECONDS = 30
EKS_CLUSTER_TAG = "aws:eks:cluster-name"


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""

    def line(self) -> str:
        fix = f" -> {self.fix}" if self.fix and self.status != "ok" else ""
        return f"{self.status:<4} {self.name}: {self.detail}{fix}"


def main_check(settings: Settings, *, output: str) -> int:
    checks = asyncio.run(run_checks(settings))
    if output == "json":
        print(json.dumps({"checks": [asdict(c) for c in checks], "ok": _passed(checks)}))
    else:
        for check in checks:
            print(check.line())
    return EXIT_OK if _passed(checks) else EXIT_FAILED


def _passed(checks: list[Check]) -> bool:
    return all(c.status != "fail" for c in checks)


async def run_checks(settings: Settings) -> list[Check]:
    metrics = Metrics()
    checks: list[Check] = []
    if settings.source == "sqs" or settings.platform == "ecs":
        checks += await _aws_checks(settings, metrics)
    if settings.source == "imds":
        checks.append(await _imds_check(settings, metrics))
    if settings.platform == "kubernetes" or settings.ha.leader_election:
        checks += await _rbac_checks(settings, metrics)
    return checks


def _failed(name: str, exc: BaseException, fix: str) -> Check:
    return Check(name, "fail", f"{type(exc).__name__}: {exc}", fix)


async def _guard(name: str, fix: str, step: Callable[[], Awaitable[list[Check]]]) -> list[Check]:
    try:
        return await step()
    except (LifecycledError, KeyError, OSError, TimeoutError) as exc:
        return [_failed(name, exc, fix)]


# --- AWS -------------------------------------------------------------------------------------


async def _aws_checks(settings: Settings, metrics: Metrics) -> list[Check]:
    if not region_known(settings):
        fix = "set AWS_REGION (or LIFECYCLED_REGION)"
        return [Check("aws region", "fail", "no AWS region is configured", fix)]
    services: tuple[str, ...] = ("sts", "sqs", "events", "autoscaling", "ec2")
    services += ("ecs",) if settings.platform == "ecs" else ()
    checks: list[Check] = []
    try:
        async with AwsClients.open(settings, metrics, services) as aws:
            checks += await _guard("aws credentials", _CREDENTIALS_FIX, lambda: _identity(aws))
            if checks[-1].status == "fail":
                return checks
            if settings.source == "sqs":
                checks += await _guard(
                    "queue",
                    "check LIFECYCLED_QUEUE_URL and sqs:GetQueueAttributes",
                    lambda: _queue(aws, settings),
                )
            checks += await _guard(
                "iam ec2:DescribeInstances", "grant ec2:DescribeInstances", lambda: _ec2(aws)
            )
            checks += await _guard(
                "auto scaling groups",
                "grant autoscaling:DescribeAutoScalingGroups",
                lambda: _groups(aws, settings),
            )
            if settings.platform == "ecs":
                checks += await _guard(
                    "ecs clusters",
                    "grant ecs:ListClusters and ecs:ListContainerInstances",
                    lambda: _ecs(aws, settings),
                )
    except LifecycledError as exc:
        checks.append(_failed("aws", exc, _CREDENTIALS_FIX))
    return checks


_CREDENTIALS_FIX = "give the pod AWS credentials (IRSA / Pod Identity) and a region"


async def _identity(aws: AwsClients) -> list[Check]:
    account = await aws.sts.caller_account()
    return [Check("aws credentials", "ok", f"account {account}, region {aws.sts.region}")]


async def _ec2(aws: AwsClients) -> list[Check]:
    await aws.ec2.can_describe()
    return [Check("iam ec2:DescribeInstances", "ok", "allowed")]


async def _ecs(aws: AwsClients, settings: Settings) -> list[Check]:
    """The clusters ECS mode looks in (LIFECYCLED_ECS_CLUSTERS, else every one) can be read."""
    clusters = sorted(settings.ecs.clusters) or await aws.ecs.list_clusters()
    if not clusters:
        fix = "create the cluster, or check the region and LIFECYCLED_ECS_CLUSTERS"
        return [Check("ecs clusters", "warn", "no ECS cluster in this region", fix)]
    checks = []
    for cluster in clusters:
        name = f"ecs cluster {cluster.rsplit('/', 1)[-1]}"
        fix = "check LIFECYCLED_ECS_CLUSTERS and grant ecs:ListContainerInstances"
        try:
            found = await aws.ecs.list_container_instances(cluster)
        except LifecycledError as exc:
            checks.append(_failed(name, exc, fix))
            continue
        detail = f"{len(found)} container instance(s) (ecs:ListContainerInstances allowed)"
        checks.append(Check(name, "ok", detail))
    return checks


async def _queue(aws: AwsClients, settings: Settings) -> list[Check]:
    url = settings.queue.url or ""
    attributes = await aws.sqs.attributes(url)
    checks = [Check("queue", "ok", f"{url} is reachable (sqs:GetQueueAttributes allowed)")]
    checks.append(_redrive(attributes))
    checks.append(_visibility(settings))
    checks.append(_queue_policy(attributes))
    arn = attributes.get("QueueArn", "")
    checks += await _guard(
        "eventbridge rules",
        "grant events:ListRuleNamesByTarget and events:DescribeRule to check the rules",
        lambda: _rules(aws, arn),
    )
    return checks


def _redrive(attributes: dict[str, str]) -> Check:
    text = attributes.get("RedrivePolicy")
    fix = "add a redrive policy: a dead-letter queue with maxReceiveCount 3-5"
    if not text:
        return Check("queue redrive policy", "fail", "the queue has no dead-letter queue", fix)
    try:
        policy = json.loads(text)
        count = int(policy["maxReceiveCount"])
        target = str(policy["deadLetterTargetArn"])
    except (ValueError, KeyError, TypeError):
        return Check("queue redrive policy", "fail", "the redrive policy is unreadable", fix)
    if count < 2:
        detail = f"maxReceiveCount {count}: one failed try dead-letters a notice"
        return Check("queue redrive policy", "warn", detail, "use a maxReceiveCount of 3-5")
    return Check("queue redrive policy", "ok", f"dead letters go to {target} after {count}")


def _visibility(settings: Settings) -> Check:
    seconds = settings.queue.visibility_seconds
    needed = 2 * settings.calls.timeout_seconds
    if seconds < needed:
        detail = (
            f"LIFECYCLED_SQS_VISIBILITY_SECONDS={seconds} is under twice the call timeout "
            f"({needed:g} s): a message may come back while it is being handled"
        )
        return Check("queue visibility timeout", "warn", detail, f"set it to {needed:g} or more")
    detail = f"{seconds} s per receive, extended every {seconds / 2:g} s while handled"
    return Check("queue visibility timeout", "ok", detail)


def _queue_policy(attributes: dict[str, str]) -> Check:
    fix = "let events.amazonaws.com sqs:SendMessage to the queue (deploy/cloudformation)"
    try:
        statements = json.loads(attributes.get("Policy") or "{}").get("Statement", [])
    except (ValueError, AttributeError):
        statements = []
    if isinstance(statements, dict):
        statements = [statements]
    if any(_lets_eventbridge_send(s) for s in statements if isinstance(s, dict)):
        return Check("queue policy", "ok", "EventBridge may send to the queue")
    return Check("queue policy", "fail", "the queue policy does not let EventBridge send", fix)


def _lets_eventbridge_send(statement: dict[str, Any]) -> bool:
    principal = statement.get("Principal")
    services = principal.get("Service") if isinstance(principal, dict) else principal
    services = [services] if isinstance(services, str) else services or []
    actions = statement.get("Action")
    actions = [actions] if isinstance(actions, str) else actions or []
    return (
        statement.get("Effect") == "Allow"
        and any(s in ("events.amazonaws.com", "*") for s in services)
        and any(a in ("sqs:SendMessage", "sqs:*", "*") for a in actions)
    )


async def _rules(aws: AwsClients, queue_arn: str) -> list[Check]:
    patterns = []
    for name in await aws.events.rules_targeting(queue_arn):
        text = await aws.events.rule_pattern(name)
        if text:
            patterns.append(json.loads(text))
    return [_rule_check(rule, patterns) for rule in EVENT_RULES]


def _rule_check(rule: EventRule, patterns: list[dict[str, Any]]) -> Check:
    source = rule.pattern["source"][0]
    detail_type = rule.pattern["detail-type"][0]
    name = f"eventbridge rule {detail_type}"
    if any(_covers(p, source, detail_type) for p in patterns):
        return Check(name, "ok", "an enabled rule sends it to this queue")
    status: Status = "warn" if rule.name in OPTIONAL_RULES else "fail"
    detail = f"no enabled rule sends {source} '{detail_type}' to this queue"
    return Check(name, status, detail, f"create rule {rule.name} (lifecycled/rules.py)")


def _covers(pattern: dict[str, Any], source: str, detail_type: str) -> bool:
    sources = pattern.get("source", [])
    types = pattern.get("detail-type")
    return source in sources and (types is None or detail_type in types)


async def _groups(aws: AwsClients, settings: Settings) -> list[Check]:
    groups = await _served_groups(aws, settings)
    if groups is None:
        detail = "no LIFECYCLED_CLUSTER_NAME or LIFECYCLED_OWNER_TAG: cannot tell which groups"
        fix = "set one to check the groups' terminate hooks"
        return [Check("auto scaling groups", "warn", detail, fix)]
    if not groups:
        detail = "no Auto Scaling group carries this cluster's tag"
        return [Check("auto scaling groups", "warn", detail, "tag the node groups")]
    checks = [Check("auto scaling groups", "ok", f"{len(groups)} served: {', '.join(groups)}")]
    for group in groups:
        checks += await _guard(
            f"terminate hook {group}",
            "grant autoscaling:DescribeLifecycleHooks",
            lambda group=group: _hook(aws, settings, group),  # type: ignore[misc]
        )
    return checks


async def _served_groups(aws: AwsClients, settings: Settings) -> list[str] | None:
    scope = settings.scope
    if scope.owner_tag:
        key, eq, value = scope.owner_tag.partition("=")
        return await aws.autoscaling.groups_tagged(key.strip(), value.strip() if eq else None)
    if scope.cluster_name:
        tagged = await aws.autoscaling.groups_tagged(
            f"kubernetes.io/cluster/{scope.cluster_name}", None
        )
        eks = await aws.autoscaling.groups_tagged(EKS_CLUSTER_TAG, scope.cluster_name)
        return sorted(set(tagged) | set(eks))
    return None


async def _hook(aws: AwsClients, settings: Settings, group: str) -> list[Check]:
    name = f"terminate hook {group}"
    hooks = await aws.autoscaling.terminating_hook_infos(group)
    if not hooks:
        fix = (
            f"aws autoscaling put-lifecycle-hook --auto-scaling-group-name {group} "
            "--lifecycle-hook-name lifecycled --lifecycle-transition "
            "autoscaling:EC2_INSTANCE_TERMINATING --heartbeat-timeout 300 --default-result CONTINUE"
        )
        return [Check(name, "fail", "the group has no terminate lifecycle hook", fix)]
    checks = []
    if settings.source == "imds" and len(hooks) > 1:
        detail = f"{len(hooks)} terminate hooks ({', '.join(hooks)}): DaemonSet mode completes none"
        checks.append(Check(name, "warn", detail, "keep one terminate hook per group"))
    for hook, info in sorted(hooks.items()):
        every = info.heartbeat_timeout * settings.hooks.heartbeat_fraction
        detail = (
            f"{hook}: heartbeat timeout {info.heartbeat_timeout} s (a heartbeat every "
            f"{every:g} s), global {info.global_timeout} s, default result {info.default_result}"
        )
        if info.heartbeat_timeout < MIN_HEARTBEAT_SECONDS:
            fix = f"raise the heartbeat timeout to {MIN_HEARTBEAT_SECONDS} s or more"
            checks.append(Check(name, "warn", detail, fix))
        else:
            checks.append(Check(name, "ok", detail))
    return checks


# --- IMDS ------------------------------------------------------------------------------------


async def _imds_check(settings: Settings, metrics: Metrics) -> Check:
    name = "imds token"
    fix = (
        "set the launch template's HttpPutResponseHopLimit to 2, or run the DaemonSet "
        "with hostNetwork (docs/configuration.md, Hop limit)"
    )
    try:
        timeout = min(2.0, settings.calls.timeout_seconds)
        async with ImdsClient.open(metrics, timeout_seconds=timeout) as imds:
            instance = await imds.get("meta-data/instance-id")
    except (LifecycledError, OSError, TimeoutError) as exc:
        return Check(name, "fail", f"no IMDSv2 token: {type(exc).__name__}: {exc}", fix)
    return Check(name, "ok", f"IMDSv2 answers (instance {instance})")


# --- Kubernetes RBAC -------------------------------------------------------------------------


async def _rbac_checks(settings: Settings, metrics: Metrics) -> list[Check]:
    # (verb, group, resource, subresource), namespace ("": all), name ("": any)
    wanted: list[tuple[tuple[str, str, str, str], str, str]] = []
    if settings.platform == "kubernetes":
        wanted += [(v, "", "") for v in RBAC]
        if settings.jobs.requeue_enabled:
            namespaces = sorted(settings.jobs.requeue_namespaces) or [""]
            wanted += [(v, ns, "") for ns in namespaces for v in RBAC_REQUEUE]
    if settings.ha.leader_election:
        ha = settings.ha
        # The chart's Role names the Lease for get and update (create cannot be named).
        wanted += [
            (v, ha.lease_namespace, "" if v[0] == "create" else ha.lease_name) for v in RBAC_LEASE
        ]
    try:
        async with KubeClient.open(metrics, settings.calls.timeout_seconds) as kube:
            return [
                await _review(kube, *access, namespace=ns, name=name) for access, ns, name in wanted
            ]
    except (LifecycledError, OSError, TimeoutError) as exc:
        fix = "check KUBECONFIG or the in-cluster service account"
        return [_failed("kubernetes", exc, fix)]


async def _review(
    kube: KubeClient,
    verb: str,
    group: str,
    resource: str,
    subresource: str,
    *,
    namespace: str,
    name: str = "",
) -> Check:
    what = f"{resource}/{subresource}" if subresource else resource
    where = f" in {namespace}" if namespace else ""
    check = f"rbac {verb} {what}{where}"
    allowed = await kube.can(
        verb, resource, group=group, subresource=subresource, namespace=namespace, name=name
    )
    if allowed:
        return Check(check, "ok", "allowed")
    api = f"{group}/" if group else ""
    role = f"a Role in {namespace}" if namespace else "the ClusterRole"
    named = f" {name}" if name else ""
    fix = f"grant {verb} on {api}{what}{named} in {role} (the chart's)"
    return Check(check, "fail", "not allowed (SelfSubjectAccessReview)", fix)
