"""Settings: environment variables LIFECYCLED_*, same names as the CLI flags.

Where AWS and Kubernetes are reached is not a lifecycled setting: botocore's own
AWS_ENDPOINT_URL / AWS_REGION chain and KUBECONFIG (or the in-cluster account) decide.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

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


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LIFECYCLED_", frozen=True, extra="forbid")

    # Where notices come from and what we act on.
    source: Literal["sqs", "imds"] = "sqs"
    platform: Literal["kubernetes", "ecs"] = "kubernetes"
    queue_url: str | None = None
    region: str | None = Field(default=None, description="Only accept notices from this region.")
    allowed_accounts: Annotated[frozenset[str], NoDecode] = frozenset()
    # Unset region / accounts mean this handler's own (its credentials' account, its clients'
    # region) in queue mode; accepting notices that name any account or region is explicit.
    any_account_or_region: bool = False
    metrics_address: str = "0.0.0.0:9090"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "text"] = "json"

    # DaemonSet mode (source=imds). The metadata endpoint follows botocore's convention,
    # AWS_EC2_METADATA_SERVICE_ENDPOINT; the node name comes from the downward API.
    node_name: str | None = Field(
        default=None,
        validation_alias=AliasChoices("LIFECYCLED_NODE_NAME", "NODE_NAME", "node_name"),
    )
    imds_poll_seconds: float = Field(default=2.0, gt=0, le=10)

    # Queue consumption.
    sqs_wait_seconds: int = Field(default=20, ge=0, le=20)
    sqs_max_messages: int = Field(default=10, ge=1, le=10)
    sqs_visibility_seconds: int = Field(default=60, ge=5, le=43200)
    message_concurrency: int = Field(default=32, ge=1)

    # Drains.
    # What each notice kind does (the defaults are the table in docs/configuration.md, "Per-kind
    # actions"); `none` records only.
    spot_interruption_action: ActionName = "drain"
    rebalance_recommendation_action: ActionName = Field(
        default="cordon",
        # LIFECYCLED_REBALANCE_ACTION is the setting's earlier name, still accepted.
        validation_alias=AliasChoices(
            "LIFECYCLED_REBALANCE_RECOMMENDATION_ACTION",
            "LIFECYCLED_REBALANCE_ACTION",
            "rebalance_recommendation_action",
            "rebalance_action",
        ),
    )
    scheduled_change_action: ActionName = "drain"
    instance_state_change_action: ActionName = "drain"
    lifecycle_terminate_action: ActionName = "drain"
    # A rebalance drain whose instance is still here this long after the notice gives the
    # node back (None: never).
    rebalance_uncordon_after_seconds: float | None = Field(default=None, gt=0)
    spot_notice_seconds: float = Field(default=120.0, gt=0)
    deadline_margin_seconds: float = Field(default=5.0, ge=0)
    drain_poll_seconds: float = Field(default=1.0, gt=0)
    eviction_retry_seconds: float = Field(default=2.0, gt=0)
    lifecycle_max_hold_seconds: float = Field(default=3600.0, gt=0)
    heartbeat_fraction: float = Field(default=0.5, gt=0, lt=1)
    node_cache_seconds: float = Field(default=30.0, ge=0)
    dedupe_seconds: float = Field(default=3600.0, ge=0)

    # Jobs.
    job_idempotent_default: bool = False
    job_stop_lead_seconds: float = Field(default=180.0, ge=0)
    requeue_max_attempts: int = Field(default=3, ge=0)
    requeue_queue_url: str | None = None
    launch_ready_timeout_seconds: float = Field(default=600.0, gt=0)

    # High availability (Deployment mode, 2+ replicas).
    leader_election: bool = False
    lease_name: str = "lifecycled"
    lease_namespace: str = Field(
        default="default",
        validation_alias=AliasChoices(
            "LIFECYCLED_LEASE_NAMESPACE", "POD_NAMESPACE", "lease_namespace"
        ),
    )
    lease_duration_seconds: int = Field(default=15, ge=2)  # the Lease holds whole seconds
    lease_renew_seconds: float = Field(default=10.0, ge=1.5)
    lease_retry_seconds: float = Field(default=2.0, ge=1)
    identity: str | None = Field(
        default=None, validation_alias=AliasChoices("LIFECYCLED_IDENTITY", "POD_NAME", "identity")
    )

    # Operator controls.
    dry_run: bool = False  # decide, log and count; change nothing in Kubernetes or AWS
    # Ownership: act only on this cluster's instances. `owner_tag` is `key` or `key=value`;
    # unset with `cluster_name` set: the EKS tags kubernetes.io/cluster/<name> or
    # aws:eks:cluster-name=<name>. `node_selector` (Kubernetes) is a label selector.
    cluster_name: str | None = None
    owner_tag: str | None = None
    node_selector: str | None = None
    # A notice about an instance that is not ours: `delete` it (a queue per cluster), or
    # `release` it for another cluster's handler (a shared queue).
    not_ours: Literal["delete", "release"] = "delete"
    not_ours_visibility_seconds: int = Field(default=2, ge=0, le=43200)
    not_ours_max_forwards: int = Field(default=60, ge=0)

    # External calls.
    api_timeout_seconds: float = Field(default=10.0, gt=0)
    retry_delays: Annotated[tuple[float, ...], NoDecode] = (0.5, 1.0, 2.0, 5.0)
    shutdown_grace_seconds: float = Field(default=20.0, ge=0)

    # ECS mode.
    # Clusters to search for the instance's container instance (comma-separated names or
    # ARNs); empty: every cluster in the region (ListClusters).
    ecs_clusters: Annotated[frozenset[str], NoDecode] = frozenset()
    # Services whose tasks stay until the end, as ECS's own DAEMON services do.
    ecs_daemon_services: Annotated[frozenset[str], NoDecode] = frozenset()
    ecs_rerun_idempotent: bool = False  # also re-run idempotent standalone tasks we stop
    ecs_target_poll_seconds: float = Field(default=1.0, gt=0)  # DescribeTargetHealth interval
    _ecs_csv = field_validator("ecs_clusters", "ecs_daemon_services", mode="before")(_split_csv)

    # Load balancers (Kubernetes mode): take the node out before evicting its pods.
    # Target groups to look in (ARNs), and/or tags that pick target groups (all must match).
    lb_target_groups: Annotated[frozenset[str], NoDecode] = frozenset()
    lb_target_group_tags: Annotated[dict[str, str | None], NoDecode] = Field(default_factory=dict)
    lb_classic_names: Annotated[frozenset[str], NoDecode] = frozenset()  # Classic ELB names
    lb_cache_seconds: float = Field(default=60.0, ge=0)  # target group list and attributes
    lb_max_wait_seconds: float = Field(default=300.0, ge=0)  # longest wait for draining
    lb_poll_seconds: float = Field(default=1.0, gt=0)  # DescribeTargetHealth interval
    lb_exclude_label: bool = True  # node.kubernetes.io/exclude-from-external-load-balancers
    _lb_csv = field_validator("lb_target_groups", "lb_classic_names", mode="before")(_split_csv)
    _lb_tags = field_validator("lb_target_group_tags", mode="before")(_split_tags)

    _csv = field_validator("allowed_accounts", mode="before")(_split_csv)
    _floats = field_validator("retry_delays", mode="before")(_split_floats)

    @model_validator(mode="after")
    def _check_source(self) -> Settings:
        if self.source == "sqs" and not self.queue_url:
            raise ValueError("LIFECYCLED_QUEUE_URL is required when LIFECYCLED_SOURCE=sqs")
        if self.source == "imds" and not self.node_name:
            raise ValueError(
                "NODE_NAME (or LIFECYCLED_NODE_NAME) is required when LIFECYCLED_SOURCE=imds"
            )
        if self.owner_tag is not None and not self.owner_tag.partition("=")[0].strip():
            raise ValueError("LIFECYCLED_OWNER_TAG needs a tag key: `key` or `key=value`")
        if self.leader_election and self.source != "sqs":
            # A DaemonSet pod only ever acts on its own node: there is nothing to elect.
            raise ValueError("LIFECYCLED_LEADER_ELECTION is for queue mode (LIFECYCLED_SOURCE=sqs)")
        return self

    @property
    def rebalance_action(self) -> ActionName:
        """The earlier name of `rebalance_recommendation_action`."""
        return self.rebalance_recommendation_action

    @property
    def lb_target_groups_configured(self) -> bool:
        return bool(self.lb_target_groups or self.lb_target_group_tags)

    @property
    def metrics_host_port(self) -> tuple[str, int]:
        host, _, port = self.metrics_address.rpartition(":")
        return host or "0.0.0.0", int(port)


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit overrides (CLI flags) on top."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
