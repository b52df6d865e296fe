"""Whose notices a queue handler believes: secure by default.

The queue is the trust boundary: whoever can send to it can ask for a drain. So with no
scope configured the handler scopes itself at start-up: the allowed account is its own
credentials' (STS GetCallerIdentity), the region its clients' own. A notice naming another
account or region is then rejected (dead-lettered), whatever it says. Accepting any account
and region is an explicit setting, `LIFECYCLED_ANY_ACCOUNT_OR_REGION`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable

from lifecycled.clients.aws import AwsClients
from lifecycled.errors import LifecycledError
from lifecycled.observe import fields
from lifecycled.ownership import EKS_CLUSTER_TAG, KUBERNETES_CLUSTER_TAG
from lifecycled.retry import keep_trying
from lifecycled.settings import Settings

log = logging.getLogger(__name__)

EKSCTL_CLUSTER_LABEL = "alpha.eksctl.io/cluster-name"
SAMPLE = 20  # nodes whose instances are asked for their cluster tags

# (labels, instance id or None) of the cluster's nodes
NodeSample = Callable[[int], Awaitable[list[tuple[dict[str, str], str | None]]]]


async def scoped(settings: Settings, aws: AwsClients) -> Settings:
    """`settings` with the default scope filled in (queue mode, unless opted out)."""
    if settings.source != "sqs" or settings.scope.any_account_or_region:
        if settings.scope.any_account_or_region:
            log.warning("accepting notices that name any account or region")
        return settings
    accounts = settings.scope.allowed_accounts
    if not accounts:
        account = await keep_trying(
            aws.sts.caller_account, delays=settings.calls.retry_delays, what="read own account"
        )
        accounts = frozenset({account})
    region = settings.scope.region or aws.sts.region
    log.info("notices accepted from", extra=fields(accounts=sorted(accounts), region=region))
    scope = settings.scope.model_copy(update={"allowed_accounts": accounts, "region": region})
    return settings.model_copy(update={"scope": scope})


def cluster_names(labels: Iterable[dict[str, str]], tags: Iterable[dict[str, str]]) -> set[str]:
    """Cluster names the nodes' labels (eksctl's) and their instances' tags (EKS's) give."""
    names = {node[EKSCTL_CLUSTER_LABEL] for node in labels if node.get(EKSCTL_CLUSTER_LABEL)}
    for instance in tags:
        if instance.get(EKS_CLUSTER_TAG):
            names.add(instance[EKS_CLUSTER_TAG])
        names.update(
            key[len(KUBERNETES_CLUSTER_TAG) :]
            for key in instance
            if key.startswith(KUBERNETES_CLUSTER_TAG) and len(key) > len(KUBERNETES_CLUSTER_TAG)
        )
    return names


async def with_cluster_name(settings: Settings, aws: AwsClients, nodes: NodeSample) -> Settings:
    """Queue mode on Kubernetes with no cluster name or owner tag: the name the cluster's own
    nodes carry (an eksctl label, or their instances' EKS tags), so that a notice for another
    cluster's instance is refused by tag even when the instance id resolves here. Several
    names, or none: no tag check (as before), said once at warning level."""
    scope = settings.scope
    if settings.source != "sqs" or settings.platform != "kubernetes":
        return settings
    if scope.cluster_name or scope.owner_tag or scope.any_account_or_region:
        return settings
    sample = await keep_trying(
        lambda: nodes(SAMPLE), delays=settings.calls.retry_delays, what="list nodes"
    )
    ids = [instance for _, instance in sample if instance]
    try:
        found = await aws.ec2.describe_instances(ids) if ids else {}
    except LifecycledError as exc:
        log.warning("cannot read the nodes' instance tags", extra=fields(error=str(exc)))
        found = {}
    names = cluster_names((labels for labels, _ in sample), (i.tags for i in found.values()))
    if len(names) != 1:
        log.warning(
            "cluster name not found on the nodes; instances are not checked by tag "
            "(set LIFECYCLED_CLUSTER_NAME or LIFECYCLED_OWNER_TAG)",
            extra=fields(names=sorted(names)),
        )
        return settings
    name = names.pop()
    log.info("cluster name from the nodes; only its instances are ours", extra=fields(cluster=name))
    return settings.model_copy(update={"scope": scope.model_copy(update={"cluster_name": name})})
