"""Metrics and structured logs.

Metric labels are bounded (kinds, steps, outcomes, reason codes): never node names or ids,
but for `lifecycled_drain_info`, one series per drain open now (docs/events.md).
Each service instance owns its registry, so several can run in one process (tests).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from lifecycled import __version__

DRAIN_BUCKETS = (1, 5, 10, 30, 60, 90, 120, 180, 300, 600, 1800, 3600, 14400)
FAST_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        # Which build is running, as a label on a constant 1 (the Prometheus convention).
        self.build_info = Gauge(
            "lifecycled_build_info", "The running lifecycled, by version.", ["version"], registry=r
        )
        self.build_info.labels(__version__).set(1)
        self.notices = Counter(
            "lifecycled_notices_total", "Notices accepted, by kind.", ["kind"], registry=r
        )
        self.rejected = Counter(
            "lifecycled_rejected_messages_total",
            "Messages that could not be parsed or are out of scope, by reason.",
            ["reason"],
            registry=r,
        )
        self.ignored = Counter(
            "lifecycled_ignored_messages_total",
            "Well-formed messages that ask nothing of us, by reason.",
            ["reason"],
            registry=r,
        )
        self.unknown_instances = Counter(
            "lifecycled_unknown_instances_total",
            "Notices about instances that are not in this cluster, by kind.",
            ["kind"],
            registry=r,
        )
        self.duplicates = Counter(
            "lifecycled_duplicate_notices_total", "Notices already seen.", ["kind"], registry=r
        )
        self.drains_in_progress = Gauge(
            "lifecycled_drains_in_progress", "Drains currently open.", registry=r
        )
        self.drain_duration = Histogram(
            "lifecycled_drain_duration_seconds",
            "From the notice's event time to the end of the drain.",
            ["kind", "outcome"],
            buckets=DRAIN_BUCKETS,
            registry=r,
        )
        self.notice_to_cordon = Histogram(
            "lifecycled_notice_to_cordon_seconds",
            "From the notice's event time to the node being cordoned.",
            buckets=FAST_BUCKETS,
            registry=r,
        )
        self.evictions = Counter(
            "lifecycled_evictions_total", "Eviction attempts, by outcome.", ["outcome"], registry=r
        )
        self.lifecycle_actions = Counter(
            "lifecycled_lifecycle_actions_total",
            "CompleteLifecycleAction calls, by result (CONTINUE, ABANDON, error).",
            ["result"],
            registry=r,
        )
        self.heartbeats = Counter(
            "lifecycled_lifecycle_heartbeats_total",
            "RecordLifecycleActionHeartbeat calls, by outcome.",
            ["outcome"],
            registry=r,
        )
        self.forced_terminations = Counter(
            "lifecycled_forced_terminations_total",
            "Instances terminated while their drain was still open, by notice kind.",
            ["kind"],
            registry=r,
        )
        self.drain_errors = Counter(
            "lifecycled_drain_errors_total",
            "Errors inside drains: temporary (the step is retried until the deadline) or "
            "permanent (the drain ends as failed and its hook is released), by kind.",
            ["kind", "error"],
            registry=r,
        )
        self.deadlines_missed = Counter(
            "lifecycled_deadlines_missed_total",
            "Drains that did not finish before their deadline, by kind.",
            ["kind"],
            registry=r,
        )
        self.api_requests = Counter(
            "lifecycled_api_requests_total",
            "Calls to AWS and Kubernetes, by API, operation and outcome.",
            ["api", "operation", "outcome"],
            registry=r,
        )
        self.api_duration = Histogram(
            "lifecycled_api_request_duration_seconds",
            "Duration of calls to AWS and Kubernetes.",
            ["api", "operation"],
            buckets=FAST_BUCKETS,
            registry=r,
        )
        self.jobs_requeued = Counter(
            "lifecycled_jobs_requeued_total",
            "Jobs re-created (or handed to the requeue queue) after an interruption, by reason.",
            ["reason"],
            registry=r,
        )
        self.requeue_limit = Counter(
            "lifecycled_requeue_limit_reached_total",
            "Jobs not requeued because they reached the attempt limit.",
            registry=r,
        )
        self.jobs_waited = Histogram(
            "lifecycled_jobs_waited_seconds",
            "How long a drain waited for a running job to finish.",
            buckets=DRAIN_BUCKETS,
            registry=r,
        )
        self.hold_exceeded = Counter(
            "lifecycled_hook_hold_exceeded_total",
            "Drains whose jobs were still running when the longest hold ran out.",
            registry=r,
        )
        self.leader = Gauge(
            "lifecycled_leader", "1 while this replica holds the leader lease.", registry=r
        )
        self.launch_hooks = Counter(
            "lifecycled_launch_hooks_total",
            "Launch lifecycle hooks handled, by result (CONTINUE when Ready, ABANDON on timeout).",
            ["result"],
            registry=r,
        )
        self.imds_polls = Counter(
            "lifecycled_imds_polls_total",
            "Instance metadata polls (DaemonSet mode), by outcome (ok, error).",
            ["outcome"],
            registry=r,
        )
        self.drains_cancelled = Counter(
            "lifecycled_drains_cancelled_total",
            "Drains ended because AWS cancelled their scheduled change (node uncordoned), by kind.",
            ["kind"],
            registry=r,
        )
        self.dry_run_actions = Counter(
            "lifecycled_dry_run_actions_total",
            "What a live run would have done (dry run), by notice kind and action.",
            ["kind", "action"],
            registry=r,
        )
        self.not_ours_messages = Counter(
            "lifecycled_not_ours_messages_total",
            "Messages about other clusters' instances, by what we did (deleted, released, "
            "forwarded, dropped).",
            ["outcome"],
            registry=r,
        )
        self.messages = Counter(
            "lifecycled_sqs_messages_total",
            "SQS messages by what happened to them (received, deleted, released).",
            ["outcome"],
            registry=r,
        )
        # ECS mode.
        self.targets_deregistered = Counter(
            "lifecycled_targets_deregistered_total",
            "Load balancer targets of service tasks deregistered before their task is stopped.",
            registry=r,
        )
        self.target_drain_wait = Histogram(
            "lifecycled_target_drain_wait_seconds",
            "From DeregisterTargets until the target left its group (or the wait was cut short).",
            ["outcome"],
            buckets=(*FAST_BUCKETS, 120, 300),
            registry=r,
        )
        self.tasks_stopped = Counter(
            "lifecycled_tasks_stopped_total",
            "ECS tasks stopped by a drain, by reason (service, job, requeued, limit).",
            ["reason"],
            registry=r,
        )

        # Load balancers first (Kubernetes mode).
        self.lb_deregistrations = Counter(
            "lifecycled_lb_deregistrations_total",
            "Nodes taken out of a load balancer before eviction, by kind (target_group, classic).",
            ["kind"],
            registry=r,
        )
        self.lb_registrations = Counter(
            "lifecycled_lb_registrations_total",
            "Nodes put back into a load balancer when their drain was cancelled, by kind.",
            ["kind"],
            registry=r,
        )
        self.lb_wait = Histogram(
            "lifecycled_lb_wait_seconds",
            "From deregistration to the first eviction, by outcome (unused, delay_passed, capped).",
            ["outcome"],
            buckets=(*FAST_BUCKETS, 120, 300, 600),
            registry=r,
        )
        self.lb_errors = Counter(
            "lifecycled_lb_errors_total",
            "Load balancer steps that failed; the drain went on without them.",
            registry=r,
        )
        self.kube_throttled = Histogram(
            "lifecycled_kube_client_wait_seconds",
            "Time a Kubernetes call waited for the client's rate limit (QPS/burst), by "
            "priority (urgent: cordons and records; normal: evictions, lists).",
            ["priority"],
            buckets=(0.001, 0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30),
            registry=r,
        )
        self.eviction_wait = Histogram(
            "lifecycled_eviction_wait_seconds",
            "Time an eviction waited before it was sent: for the storm's cordons to settle, "
            "then for one of the cluster-wide eviction slots (nearest deadline first).",
            ["stage"],
            buckets=(0.001, 0.01, 0.1, 0.5, 1, 2, 5, 10, 20, 60),
            registry=r,
        )
        # Ahead of the interruption (platforms/kube_notice.py, replace.py).
        self.pod_notices = Counter(
            "lifecycled_pod_notices_total",
            "Pods annotated with their interruption deadline, by outcome (annotated, error).",
            ["outcome"],
            registry=r,
        )
        self.checkpoints = Counter(
            "lifecycled_checkpoint_calls_total",
            "Checkpoint calls to pods before their eviction, by outcome (ok, http_error, "
            "timeout, error).",
            ["outcome"],
            registry=r,
        )
        self.checkpoint_duration = Histogram(
            "lifecycled_checkpoint_duration_seconds",
            "From a checkpoint call to its reply (or to giving up on it).",
            buckets=FAST_BUCKETS,
            registry=r,
        )
        self.replacements = Counter(
            "lifecycled_replacements_total",
            "Replace-ahead steps, by outcome (requested, at_max_size, terminated, "
            "decremented, error).",
            ["outcome"],
            registry=r,
        )
        self.replacement_ready = Histogram(
            "lifecycled_replacement_ready_seconds",
            "From a replacement's SetDesiredCapacity to its node being Ready.",
            buckets=DRAIN_BUCKETS,
            registry=r,
        )

        # What operators see (kube_events.py, report.py, notify.py).
        self.kube_events = Counter(
            "lifecycled_kube_events_total",
            "Kubernetes Events by outcome (created, aggregated, dropped_rate_limited, "
            "dropped_queue_full, error).",
            ["outcome"],
            registry=r,
        )
        self.notifications = Counter(
            "lifecycled_notifications_total",
            "Notifications by sink (webhook, sns) and outcome (sent, retried, failed, "
            "dropped_queue_full).",
            ["sink", "outcome"],
            registry=r,
        )
        self.notification_duration = Histogram(
            "lifecycled_notification_duration_seconds",
            "From a notification being queued to it being delivered (or given up), by sink.",
            ["sink"],
            buckets=FAST_BUCKETS,
            registry=r,
        )
        # One series per open drain, removed when it ends: at most as many as drains run at
        # once (never the cluster's node count), so an alert can name the node.
        self.drain_info = Gauge(
            "lifecycled_drain_info",
            "1 for each drain open now, labelled with its node, instance and notice kind.",
            ["node", "instance", "kind"],
            registry=r,
        )

    @contextmanager
    def api_call(self, api: str, operation: str) -> Iterator[None]:
        """Time one external call and count its outcome (ok / error class name)."""
        start = time.monotonic()
        outcome = "ok"
        try:
            yield
        except BaseException as exc:
            outcome = type(exc).__name__
            raise
        finally:
            self.api_duration.labels(api, operation).observe(time.monotonic() - start)
            self.api_requests.labels(api, operation, outcome).inc()


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, event (the message), then fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None)
        extra = ""
        if isinstance(fields, dict):
            extra = " " + " ".join(f"{k}={v}" for k, v in fields.items())
        return super().format(record) + extra


def setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        formatter: logging.Formatter = JsonFormatter()
        formatter.converter = time.gmtime
    else:
        formatter = TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Library chatter (botocore retries, aiohttp access lines) stays out of our event log.
    for noisy in ("botocore", "aiobotocore", "aiohttp.access", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def fields(**values: object) -> dict[str, dict[str, object]]:
    """`log.info("cordoned", extra=fields(node=...))`: structured fields for one log line."""
    return {"fields": values}
