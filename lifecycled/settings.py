"""Settings: environment variables LIFECYCLED_*, same names as the CLI flags.

Where AWS and Kubernetes are reached is not a lifecycled setting: botocore's own
AWS_ENDPOINT_URL / AWS_REGION chain and KUBECONFIG (or the in-cluster account) decide.

Each setting has one flat name `<name>` (environment LIFECYCLED_<NAME>, flag --<name>,
keyword `Settings(<name>=...)`, chart `config.<name>`) and lives in the group of its concern,
read as `settings.<group>.<field>`. A field's flat name is its validation alias, or its own
name when it has none; lower-case alias choices after the first are earlier names, still
accepted, and upper-case ones are environment variables read as written (the downward API's).
`SETTINGS` lists them all. Values are read as written: lists are comma-separated, never JSON.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from lifecycled.errors import ConfigError

ActionName = Literal["drain", "cordon", "none"]


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return frozenset(part.strip() for part in value.split(",") if part.strip())
    return value


def _split_tags(value: object) -> object:
    """`team=web,env=prod` -> {"team": "web", "env": "prod"}; `key` alone matches any value."""
    if isinstance(value, str):
        pairs = (part.strip().partition("=") for part in value.split(",") if part.strip())
        return {key.strip(): (text.strip() if sep else None) for key, sep, text in pairs}
    return value


def _split_floats(value: object) -> object:
    if isinstance(value, str):
        return tuple(float(part) for part in value.split(",") if part.strip())
    return value


class Group(BaseModel):
    """The settings of one concern. Each field's docstring is its description: the help of
    its flag, the docs' settings table (tools/config_doc.py) and the chart schema's text."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        validate_by_name=True,
        validate_by_alias=True,
        use_attribute_docstrings=True,
    )


class Scope(Group):
    """Which notices and instances are ours."""

    region: str | None = None
    """accept only notices from this region; also the AWS clients' region (unset: the
    clients' own region, from AWS_REGION / AWS_DEFAULT_REGION, or IMDS in DaemonSet mode)"""
    allowed_accounts: frozenset[str] = frozenset()
    """comma-separated account ids whose notices are accepted (unset: the credentials' own
    account, from STS GetCallerIdentity)"""
    any_account_or_region: bool = False
    """accept notices that name any account or region (opting out of the default scope)"""
    cluster_name: str | None = None
    """this cluster's name: instances must carry kubernetes.io/cluster/<name> or
    aws:eks:cluster-name=<name> (unset, queue mode on Kubernetes: read off the nodes' eksctl
    label or their instances' EKS tags at start-up; none found: no tag check)"""
    owner_tag: str | None = None
    """instead of the EKS tags: the tag (`key` or `key=value`) that marks our instances"""
    node_selector: str | None = None
    """Kubernetes only: a label selector; nodes outside it are not ours"""
    _csv = field_validator("allowed_accounts", mode="before")(_split_csv)


class Queue(Group):
    """Queue consumption (source=sqs)."""

    url: str | None = Field(default=None, validation_alias="queue_url")
    """the SQS queue notices arrive on (required for source=sqs)"""
    wait_seconds: int = Field(default=20, ge=0, le=20, validation_alias="sqs_wait_seconds")
    """long-poll wait of each receive"""
    max_messages: int = Field(default=10, ge=1, le=10, validation_alias="sqs_max_messages")
    """messages per receive"""
    visibility_seconds: int = Field(
        default=60, ge=5, le=43200, validation_alias="sqs_visibility_seconds"
    )
    """visibility timeout per receive; extended every half of it while a message is handled"""
    concurrency: int = Field(default=32, ge=1, validation_alias="message_concurrency")
    """messages handled at once (up to four times as many received and waiting)"""
    receivers: int = Field(default=8, ge=1, le=32, validation_alias="queue_receivers")
    """long polls in parallel, so a storm's receives overlap (8: a 1,000-warning storm's
    notice-to-cordon p99 went from 2.2 s with 4 to 1.1 s)"""
    not_ours: Literal["delete", "release"] = "delete"
    """a notice about an instance that is not ours: `delete` it (a queue per cluster), or
    `release` it for the other handlers of a shared queue"""
    not_ours_visibility_seconds: int = Field(default=2, ge=0, le=43200)
    """`release`: how long before the message is visible again"""
    not_ours_max_forwards: int = Field(default=60, ge=0)
    """`release`: how many fresh copies may be sent before an unclaimed notice is dropped"""


class Imds(Group):
    """DaemonSet mode (source=imds).

    The metadata endpoint follows botocore's convention, AWS_EC2_METADATA_SERVICE_ENDPOINT;
    the node name comes from the downward API.
    """

    node_name: str | None = Field(
        default=None, validation_alias=AliasChoices("node_name", "NODE_NAME")
    )
    """this pod's node, from the downward API (required for source=imds)"""
    poll_seconds: float = Field(default=2.0, gt=0, le=10, validation_alias="imds_poll_seconds")
    """longest wait between two reads of the instance metadata (jittered down to 75 %)"""


class Drain(Group):
    """What each notice does, and how drains run."""

    # Named `<kind>_action` (plan.action_table); the defaults are docs/configuration.md's
    # "Per-kind actions".
    spot_interruption_action: ActionName = "drain"
    """what a Spot warning does: drain, cordon or none"""
    rebalance_recommendation_action: ActionName = Field(
        default="cordon",
        # LIFECYCLED_REBALANCE_ACTION is the setting's earlier name, still accepted.
        validation_alias=AliasChoices("rebalance_recommendation_action", "rebalance_action"),
    )
    """what a rebalance recommendation does"""
    scheduled_change_action: ActionName = "drain"
    """what an AWS Health scheduled change does"""
    instance_state_change_action: ActionName = "drain"
    """what a `stopping` / `shutting-down` state change does"""
    lifecycle_terminate_action: ActionName = "drain"
    """what a terminate lifecycle hook does (the hook is completed whatever the action)"""
    rebalance_uncordon_after_seconds: float | None = Field(default=None, gt=0)
    """give a node back this long after its rebalance recommendation if nothing said the
    machine goes (unset: never)"""
    spot_notice_seconds: float = Field(default=120.0, gt=0)
    """a Spot warning's deadline after its event time"""
    deadline_margin_seconds: float = Field(default=5.0, ge=0)
    """no eviction starts this close to the deadline"""
    poll_seconds: float = Field(default=1.0, gt=0, validation_alias="drain_poll_seconds")
    """how often a drain re-lists the node's pods"""
    eviction_retry_seconds: float = Field(default=2.0, gt=0)
    """retry interval after a PodDisruptionBudget refusal (429)"""
    node_cache_seconds: float = Field(default=30.0, ge=0)
    """age of the node list used to resolve instances"""
    dedupe_seconds: float = Field(default=3600.0, ge=0)
    """how long an event id is remembered"""
    evictions_in_flight: int = Field(default=64, ge=1)
    """evictions in flight across every drain, waiters nearest deadline first; as many
    drains work at once (the others wait their turn holding no pod list)"""
    eviction_settle_seconds: float = Field(default=1.0, ge=0)
    """a drain's first eviction waits until no drain opened for this long: a storm cordons
    every doomed node before evicting from any, so evicted pods are not rescheduled onto
    nodes warned a moment later"""
    eviction_settle_max_seconds: float = Field(default=15.0, ge=0)
    """the longest that wait lasts (never more than a quarter of the time left)"""
    pod_grace_seconds: int | None = Field(
        default=None,
        ge=1,
        description="Evict pods with this termination grace period instead of their own "
        "(NTH's --pod-termination-grace-period), capped by the seconds left to the deadline.",
    )
    taint_key: str = Field(
        default="lifecycled.io/draining",
        pattern=r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$",
        description="The key of the taint put on a draining node (NTH's --taint-node uses "
        "aws-node-termination-handler/...).",
    )
    taint_effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] = Field(
        default="NoSchedule",
        description="The draining taint's effect. NoExecute makes the kubelet evict pods that "
        "do not tolerate it at once, bypassing PodDisruptionBudgets.",
    )

    @property
    def rebalance_action(self) -> ActionName:
        """The earlier name of `rebalance_recommendation_action`."""
        return self.rebalance_recommendation_action


class Hooks(Group):
    """Lifecycle hooks."""

    max_hold_seconds: float = Field(
        default=3600.0, gt=0, validation_alias="lifecycle_max_hold_seconds"
    )
    """longest a lifecycle hook is held (never past its global timeout)"""
    heartbeat_fraction: float = Field(default=0.5, gt=0, lt=1)
    """heartbeat every this fraction of the hook's heartbeat timeout"""
    launch_ready_timeout_seconds: float = Field(default=600.0, gt=0)
    """a launch hook is completed CONTINUE when the node is Ready, ABANDON after this"""


class Jobs(Group):
    """Jobs on a draining machine."""

    idempotent_default: bool = Field(default=False, validation_alias="job_idempotent_default")
    """idempotency of a job without a lifecycled.io/idempotent annotation"""
    stop_lead_seconds: float = Field(default=180.0, ge=0, validation_alias="job_stop_lead_seconds")
    """jobs are waited for until the drain has this long left; then evicted or requeued"""
    requeue_max_attempts: int = Field(default=3, ge=0)
    """a job interrupted more often is not requeued again"""
    requeue_queue_url: str | None = None
    """hand requeued jobs to this (FIFO) SQS queue instead of creating them in the cluster"""
    requeue_enabled: bool = Field(
        default=True,
        description="Requeue non-idempotent jobs near the deadline; false: they are waited "
        "for, then evicted, as idempotent ones are (the chart's jobs.requeue.enabled).",
    )
    requeue_namespaces: frozenset[str] = Field(
        default=frozenset(),
        description="Requeue only jobs in these namespaces (comma-separated; empty: all); "
        "jobs elsewhere are treated as idempotent. Kubernetes only.",
    )
    interruption_annotations: bool = True
    """Kubernetes: annotate every pod a drain moves with lifecycled.io/interruption-deadline
    and -kind (and post an Event) as the drain opens, for a downward-API volume to show"""
    checkpoint_wait_seconds: float = Field(default=10.0, ge=0)
    """a pod annotated lifecycled.io/checkpoint-port is POSTed its deadline before its
    eviction; the eviction waits for the reply this long at most (never past the cutoff;
    0: no calls)"""
    _csv = field_validator("requeue_namespaces", mode="before")(_split_csv)


class Replace(Group):
    """Replacement first, for Auto Scaling groups (Kubernetes)."""

    ahead: bool = Field(default=False, validation_alias="replace_ahead")
    """on a Spot warning or rebalance recommendation (drain action) for an instance of a
    group tagged `replace_ahead_tag`, raise the group's desired capacity by one at once and
    terminate the instance with ShouldDecrementDesiredCapacity when its drain ends"""
    tag: str = Field(default="lifecycled.io/replace-ahead", validation_alias="replace_ahead_tag")
    """the Auto Scaling group tag (value `true`) that opts a group in"""
    interval_seconds: float = Field(
        default=2.0, gt=0, validation_alias="replace_ahead_interval_seconds"
    )
    """raises for one group are coalesced: at most one SetDesiredCapacity per group per
    interval (the first after a quiet spell within a quarter of it)"""
    wait_seconds: float = Field(default=60.0, ge=0, validation_alias="replace_ahead_wait_seconds")
    """the first eviction waits this long at most for the replacement's node to be Ready
    (never more than a quarter of the time left)"""


class LoadBalancers(Group):
    """Load balancers (Kubernetes mode): take the node out before evicting its pods."""

    target_groups: frozenset[str] = Field(default=frozenset(), validation_alias="lb_target_groups")
    """comma-separated target group ARNs to look for the node in"""
    target_group_tags: dict[str, str | None] = Field(
        default_factory=dict, validation_alias="lb_target_group_tags"
    )
    """`key=value,key2=value2` (a bare `key`: any value): target groups carrying all of them"""
    classic_names: frozenset[str] = Field(default=frozenset(), validation_alias="lb_classic_names")
    """comma-separated Classic ELB names"""
    cache_seconds: float = Field(default=60.0, ge=0, validation_alias="lb_cache_seconds")
    """age of the target group list and of each group's deregistration delay"""
    max_wait_seconds: float = Field(default=300.0, ge=0, validation_alias="lb_max_wait_seconds")
    """longest wait for draining, whatever the deregistration delay says"""
    poll_seconds: float = Field(default=1.0, gt=0, validation_alias="lb_poll_seconds")
    """DescribeTargetHealth / DescribeInstanceHealth interval while waiting"""
    exclude_label: bool = Field(default=True, validation_alias="lb_exclude_label")
    """label draining nodes node.kubernetes.io/exclude-from-external-load-balancers"""
    _csv = field_validator("target_groups", "classic_names", mode="before")(_split_csv)
    _tags = field_validator("target_group_tags", mode="before")(_split_tags)

    @property
    def target_groups_configured(self) -> bool:
        return bool(self.target_groups or self.target_group_tags)


class Ecs(Group):
    """ECS mode (platform=ecs)."""

    clusters: frozenset[str] = Field(default=frozenset(), validation_alias="ecs_clusters")
    """comma-separated cluster names or ARNs to look in (empty: every cluster, ListClusters)"""
    daemon_services: frozenset[str] = Field(
        default=frozenset(), validation_alias="ecs_daemon_services"
    )
    """services whose tasks stay until the end, as ECS's own DAEMON services do"""
    rerun_idempotent: bool = Field(default=False, validation_alias="ecs_rerun_idempotent")
    """also re-run idempotent standalone tasks we stop"""
    target_poll_seconds: float = Field(
        default=1.0, gt=0, validation_alias="ecs_target_poll_seconds"
    )
    """DescribeTargetHealth interval"""
    _csv = field_validator("clusters", "daemon_services", mode="before")(_split_csv)


class Ha(Group):
    """High availability (Deployment mode, 2+ replicas)."""

    leader_election: bool = False
    """stand for a Lease; only the holder consumes and drains (queue mode)"""
    lease_name: str = "lifecycled"
    """the coordination.k8s.io Lease's name"""
    lease_namespace: str = Field(
        default="default", validation_alias=AliasChoices("lease_namespace", "POD_NAMESPACE")
    )
    """the Lease's namespace"""
    lease_duration_seconds: int = Field(default=15, ge=2)
    """how long a lease holds without renewal (whole seconds)"""
    lease_renew_seconds: float = Field(default=10.0, ge=1.5)
    """the leader gives up if it cannot renew within this"""
    lease_retry_seconds: float = Field(default=2.0, ge=1)
    """interval between attempts to acquire or renew"""
    identity: str | None = Field(
        default=None, validation_alias=AliasChoices("identity", "POD_NAME")
    )
    """this replica's name in the Lease (unset: hostname + random)"""


class Calls(Group):
    """External calls."""

    timeout_seconds: float = Field(default=10.0, gt=0, validation_alias="api_timeout_seconds")
    """timeout of every AWS / Kubernetes call"""
    retry_delays: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0)
    """comma-separated delays of the step retry loop"""
    kube_api_qps: float = Field(default=1000.0, ge=0)
    """one request budget for every Kubernetes call (as NTH's kube-api-qps; 0: none):
    cordons and node reads wait ahead of evictions and lists, and a 429 from the API server
    pauses it for its Retry-After"""
    kube_api_burst: int = Field(default=2000, ge=1)
    """the budget's burst (as NTH's kube-api-burst)"""
    kube_connections: int = Field(default=100, ge=1)
    """HTTP connections to the API server"""
    shutdown_grace_seconds: float = Field(default=20.0, ge=0)
    """how long in-flight messages may finish on SIGTERM"""
    _floats = field_validator("retry_delays", mode="before")(_split_floats)


class Observe(Group):
    """Metrics and logs."""

    metrics_address: str = "0.0.0.0:9090"
    """host:port for /metrics, /healthz, /readyz"""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """log level; logs go to stderr"""
    log_format: Literal["json", "text"] = "json"
    """json (one object a line) or text"""

    @property
    def metrics_host_port(self) -> tuple[str, int]:
        host, _, port = self.metrics_address.rpartition(":")
        return host or "0.0.0.0", int(port)


class Notify(Group):
    """Notifications of drain outcomes (webhook, SNS) and Kubernetes Events; never in the
    way of a drain."""

    webhook_url: str | None = Field(
        default=None,
        validation_alias="notify_webhook_url",
        description="POST one document per drain outcome to this URL (http or https).",
    )
    webhook_url_file: str | None = Field(
        default=None,
        validation_alias="notify_webhook_url_file",
        description="Read the webhook URL from this file (a mounted Secret); wins over the URL.",
    )
    webhook_headers: dict[str, str | None] = Field(
        default_factory=dict,
        validation_alias="notify_webhook_headers",
        description="Extra request headers, `Name=value,Other=value`.",
    )
    template: str = Field(
        default="json",
        validation_alias="notify_template",
        description="The body: `json` (every field), `slack` (an incoming-webhook text) or a "
        "Jinja2 template of the fields (event, cluster, node, instance, kind, deadline, "
        "pods_evicted, pods_left, asg, hook, outcome, time).",
    )
    events: frozenset[str] = Field(
        default=frozenset(),
        validation_alias="notify_events",
        description="Only these events (drain_started, drained, deadline_missed, "
        "forced_termination, drain_failed, hook_completed, hook_abandoned); empty: all.",
    )
    sns_topic_arn: str | None = Field(
        default=None,
        validation_alias="notify_sns_topic_arn",
        description="Also publish each notification (the JSON document) to this SNS topic.",
    )
    queue_size: int = Field(
        default=1000,
        ge=1,
        validation_alias="notify_queue_size",
        description="Notifications waiting per sink; over it new ones are dropped and counted.",
    )
    timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        validation_alias="notify_timeout_seconds",
        description="Time allowed for one delivery attempt.",
    )
    retry_delays: tuple[float, ...] = Field(
        default=(1.0, 2.0, 5.0, 10.0),
        validation_alias="notify_retry_delays",
        description="Pauses between delivery attempts; after the last the notification is "
        "given up (counted as failed).",
    )
    kube_events: bool = Field(
        default=True,
        validation_alias="kube_events",
        description="Record Kubernetes Events on nodes, pods and jobs (rate-limited, aggregated).",
    )
    kube_events_burst: int = Field(
        default=25,
        ge=1,
        validation_alias="kube_events_burst",
        description="Writes (new Events or count updates) per object and reason at most at "
        "once; one more each kube_events_refill_seconds after that.",
    )
    kube_events_refill_seconds: float = Field(
        default=300.0,
        gt=0,
        validation_alias="kube_events_refill_seconds",
        description="How often an object and reason earn one more write past the burst.",
    )
    _csv = field_validator("events", mode="before")(_split_csv)
    _tags = field_validator("webhook_headers", mode="before")(_split_tags)
    _floats = field_validator("retry_delays", mode="before")(_split_floats)


class Settings(BaseSettings):
    """All settings: `Settings(<name>=...)` by flat name, the rest from the environment."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    def __init__(self, **values: Any) -> None:
        """By flat name (`drain_poll_seconds=...`) or by group (`drain=...`)."""
        super().__init__(**values)

    # Where notices come from and what we act on.
    source: Literal["sqs", "imds"] = "sqs"
    """sqs (queue mode) or imds (DaemonSet mode)"""
    platform: Literal["kubernetes", "ecs"] = "kubernetes"
    """kubernetes or ecs"""
    dry_run: bool = False
    """resolve, decide, log and count; change nothing in Kubernetes or AWS"""

    scope: Scope = Field(default_factory=Scope)
    queue: Queue = Field(default_factory=Queue)
    imds: Imds = Field(default_factory=Imds)
    drain: Drain = Field(default_factory=Drain)
    hooks: Hooks = Field(default_factory=Hooks)
    jobs: Jobs = Field(default_factory=Jobs)
    replace: Replace = Field(default_factory=Replace)
    lb: LoadBalancers = Field(default_factory=LoadBalancers)
    ecs: Ecs = Field(default_factory=Ecs)
    ha: Ha = Field(default_factory=Ha)
    calls: Calls = Field(default_factory=Calls)
    observe: Observe = Field(default_factory=Observe)
    notify: Notify = Field(default_factory=Notify)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        kwargs = init_settings.init_kwargs if isinstance(init_settings, InitSettingsSource) else {}
        return _Nested(settings_cls, _by_name(kwargs)), _Nested(settings_cls, _environment())

    @model_validator(mode="after")
    def _check_source(self) -> Settings:
        if self.source == "sqs" and not self.queue.url:
            raise ValueError("LIFECYCLED_QUEUE_URL is required when LIFECYCLED_SOURCE=sqs")
        if self.source == "imds" and not self.imds.node_name:
            raise ValueError(
                "NODE_NAME (or LIFECYCLED_NODE_NAME) is required when LIFECYCLED_SOURCE=imds"
            )
        owner_tag = self.scope.owner_tag
        if owner_tag is not None and not owner_tag.partition("=")[0].strip():
            raise ValueError("LIFECYCLED_OWNER_TAG needs a tag key: `key` or `key=value`")
        if self.ha.leader_election and self.source != "sqs":
            # A DaemonSet pod only ever acts on its own node: there is nothing to elect.
            raise ValueError("LIFECYCLED_LEADER_ELECTION is for queue mode (LIFECYCLED_SOURCE=sqs)")
        return self


# --- the flat names -----------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One setting: its flat name, where it lives, and how it is spelt outside."""

    name: str  # LIFECYCLED_<NAME>, --<name>, Settings(<name>=...)
    group: str | None  # the Settings attribute holding it; None: Settings itself
    attr: str  # its field in the group
    field: FieldInfo  # type, default, bounds, description
    older: tuple[str, ...]  # earlier names, still accepted
    env: tuple[str, ...]  # the environment variables read, the first one set wins

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.older)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def help(self) -> str:
        """The field's description on one line."""
        return " ".join((self.field.description or "").split())

    @property
    def is_switch(self) -> bool:
        return self.field.annotation is bool

    @property
    def default_text(self) -> str:
        """The default as it would be written in the environment ("" when unset)."""
        value = self.field.get_default(call_default_factory=True)
        if value is None:
            return ""
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, frozenset | set):
            return ",".join(sorted(value))
        if isinstance(value, tuple):
            return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
        if isinstance(value, dict):
            return ",".join(f"{k}={v}" if v is not None else k for k, v in value.items())
        if isinstance(value, float):
            return f"{value:g}"
        return str(value)


def _setting(group: str | None, attr: str, field: FieldInfo) -> Setting:
    alias = field.validation_alias
    choices = alias.choices if isinstance(alias, AliasChoices) else [alias or attr]
    spelt = [c for c in choices if isinstance(c, str)]
    names = [c for c in spelt if not c.isupper()]
    env = [f"LIFECYCLED_{n.upper()}" for n in names] + [c for c in spelt if c.isupper()]
    return Setting(names[0], group, attr, field, tuple(names[1:]), tuple(env))


def _registry() -> dict[str, Setting]:
    found: list[Setting] = []
    for group, field in Settings.model_fields.items():
        model = field.annotation
        if isinstance(model, type) and issubclass(model, Group):
            found += [_setting(group, a, f) for a, f in model.model_fields.items()]
        else:
            found.append(_setting(None, group, field))
    return {s.name: s for s in found}


SETTINGS: Mapping[str, Setting] = _registry()  # by flat name
ENVIRONMENT = frozenset(env for s in SETTINGS.values() for env in s.env)
_BY_ATTR = {(s.group, s.attr): s for s in SETTINGS.values()}
_GROUPS = frozenset(s.group for s in SETTINGS.values() if s.group)


def _by_name(values: Mapping[str, object]) -> dict[tuple[str | None, str], object]:
    """Keyword arguments by (group, field); the flat name wins over earlier ones."""
    found: dict[tuple[str | None, str], object] = {}
    rest = dict(values)
    for setting in SETTINGS.values():
        for name in setting.names:
            if name in rest:
                found.setdefault((setting.group, setting.attr), rest.pop(name))
    for key, value in rest.items():  # whole groups, or unknown names (refused as extra)
        if key in _GROUPS and isinstance(value, BaseModel | Mapping):
            for attr, inner in dict(value).items():
                found.setdefault((key, attr), inner)
        else:
            found[(None, key)] = value
    return found


def _environment() -> dict[tuple[str | None, str], object]:
    """The LIFECYCLED_* variables (and the downward API's) set, by (group, field)."""
    env = {key.lower(): value for key, value in os.environ.items()}  # case-insensitive
    found: dict[tuple[str | None, str], object] = {}
    for setting in SETTINGS.values():
        for name in setting.env:
            if name.lower() in env:
                found[(setting.group, setting.attr)] = env[name.lower()]
                break
    return found


class _Nested(PydanticBaseSettingsSource):
    """Values by (group, field) as Settings' nested input."""

    def __init__(
        self, settings_cls: type[BaseSettings], values: dict[tuple[str | None, str], object]
    ) -> None:
        super().__init__(settings_cls)
        self.values = values

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # __call__ gives everything at once

    def __call__(self) -> dict[str, Any]:
        nested: dict[str, Any] = {}
        for (group, attr), value in self.values.items():
            if group is None:
                nested[attr] = value
            else:
                nested.setdefault(group, {})[attr] = value
        return nested


def _describe(exc: ValidationError) -> str:
    """One plain line per bad setting: its name, the value given, what is allowed."""
    lines = []
    for error in exc.errors(include_url=False):
        loc = tuple(str(part) for part in error["loc"])
        key = (loc[0], loc[1]) if len(loc) > 1 else (None, "".join(loc))
        allowed = _plain(error["msg"])
        if error["type"] == "bool_parsing":
            allowed = "should be true or false (also 1/0, yes/no, on/off)"
        setting = _BY_ATTR.get(key)
        if setting is not None:
            spelt = f"{setting.env[0]}, {setting.flag}"
            lines.append(f"{setting.name}={_shown(error['input'])} ({spelt}): {allowed}")
        elif error["type"] == "extra_forbidden":
            lines.append(f"{'.'.join(loc)}: not a setting (see lifecycled run --help)")
        else:
            lines.append(f"{'.'.join(loc)}: {allowed}" if loc else allowed)
    return "\n".join(lines)


def _plain(message: str) -> str:
    """Pydantic's message without its prefixes: "Input should be ..." -> "should be ..."."""
    for prefix in ("Value error, ", "Input "):
        message = message.removeprefix(prefix)
    return message


def _shown(value: object) -> str:
    text = ",".join(sorted(map(str, value))) if isinstance(value, frozenset | set) else value
    return repr(text)[:80]


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit overrides (CLI flags) on top."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from exc
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
