"""What a drain tells operators as it goes: Kubernetes Events on the node, notifications,
and `lifecycled_drain_info` while it is open. Every method returns at once and never raises:
the events and notifications are queued (kube_events.py, notify.py)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from lifecycled.kube_events import EventRecorder
from lifecycled.notify import Notification, Notifier
from lifecycled.observe import Metrics
from lifecycled.record import DrainRecord, Outcome

# The reasons recorded on a Node, in the order a drain usually writes them (docs/events.md).
NOTICE_RECEIVED = "InterruptionNoticeReceived"
CORDONED = "Cordoned"
DRAIN_STARTED = "DrainStarted"
HOOK_HELD = "LifecycleHookHeld"
LB_LEFT = "LoadBalancersLeft"
EVICTION_BLOCKED = "EvictionBlockedByBudget"
DRAINED = "Drained"
DEADLINE_MISSED = "DeadlineMissed"
DRAIN_FAILED = "DrainFailed"
FORCED = "ForcedTermination"
HOOK_COMPLETED = "LifecycleHookCompleted"
HOOK_COMPLETE_FAILED = "LifecycleHookCompleteFailed"
HEARTBEAT_FAILED = "LifecycleHeartbeatFailed"
GIVEN_BACK = "Uncordoned"
REPLACEMENT_REQUESTED = "ReplacementRequested"
# On pods.
EVICTING = "Evicting"
POD_REQUEUED = "Requeued"
WAITING = "WaitingForJob"
INTERRUPTION_DEADLINE = "InterruptionDeadline"

LEFT_IN_MESSAGE = 20  # pods named in a message; the count says how many more


@dataclass(slots=True)
class Progress:
    """What the platform saw of the work (filled by the platform, read when the drain ends)."""

    evicted: int = 0
    left: list[str] | None = None  # None: not listed yet (an Event must not say "no pods")


class Reporter:
    def __init__(
        self,
        metrics: Metrics,
        *,
        events: EventRecorder | None = None,
        notifier: Notifier | None = None,
        cluster: str | None = None,
    ) -> None:
        self._metrics = metrics
        self.events = events
        self._notifier = notifier
        self._cluster = cluster

    # --- the node's story ------------------------------------------------------------------

    def opened(self, target: str, record: DrainRecord) -> None:
        """The notice is recorded on the node and the node cordoned."""
        self._node(
            target,
            NOTICE_RECEIVED,
            f"{record.kind} for {record.instance_id}; deadline {record.deadline.isoformat()}",
        )
        self._node(target, CORDONED, f"cordoned for {record.kind} ({record.action})")

    def drain_started(self, target: str, record: DrainRecord) -> None:
        self._metrics.drain_info.labels(target, record.instance_id, record.kind).set(1)
        self._node(
            target, DRAIN_STARTED, f"draining until {record.deadline.isoformat()} ({record.kind})"
        )
        self._notify("drain_started", target, record)

    def hook_held(self, target: str, record: DrainRecord) -> None:
        hook = record.hook
        if hook is not None:
            self._node(target, HOOK_HELD, f"holding lifecycle hook {hook.name} ({hook.group})")

    def heartbeat_failed(self, target: str, record: DrainRecord, error: str) -> None:
        self._node(target, HEARTBEAT_FAILED, f"lifecycle heartbeat failed: {error}", warning=True)

    def lb_left(self, target: str) -> None:
        self._node(target, LB_LEFT, "out of its load balancers; evicting")

    def eviction_blocked(self, target: str, pod: str) -> None:
        # Aggregated by the recorder: one Event per node, its count rising with each refusal.
        self._node(target, EVICTION_BLOCKED, f"a PodDisruptionBudget refused evicting {pod}")

    def drain_closed(self, target: str, record: DrainRecord) -> None:
        """However the drain ended (or was cancelled): its info series goes."""
        with contextlib.suppress(KeyError):
            self._metrics.drain_info.remove(target, record.instance_id, record.kind)

    def drain_ended(
        self, target: str, record: DrainRecord, outcome: Outcome, progress: Progress
    ) -> None:
        if outcome is Outcome.DRAINED:
            self._node(target, DRAINED, f"drained: {progress.evicted} pod(s) evicted")
            self._notify("drained", target, record, progress, outcome)
        elif outcome is Outcome.DEADLINE_MISSED:
            self._node(
                target,
                DEADLINE_MISSED,
                f"deadline {record.deadline.isoformat()} passed with "
                f"{_pods(progress.left)} still on the node",
                warning=True,
            )
            self._notify("deadline_missed", target, record, progress, outcome)
        elif outcome is Outcome.FAILED:
            self._node(target, DRAIN_FAILED, "drain failed; its hook is released", warning=True)
            self._notify("drain_failed", target, record, progress, outcome)

    def forced(self, target: str, record: DrainRecord, progress: Progress) -> None:
        self._node(
            target,
            FORCED,
            f"{record.instance_id} terminated before its drain finished; "
            f"{_pods(progress.left)} were still on the node",
            warning=True,
        )
        self._notify("forced_termination", target, record, progress, Outcome.FORCED)

    def hook_released(self, target: str, record: DrainRecord, result: str, ok: bool) -> None:
        hook = record.hook
        if hook is None:
            return
        if ok:
            self._node(target, HOOK_COMPLETED, f"lifecycle hook {hook.name} completed: {result}")
        else:
            self._node(
                target,
                HOOK_COMPLETE_FAILED,
                f"could not complete lifecycle hook {hook.name}",
                warning=True,
            )
        # Not completed by us (AWS no longer held the action: it timed out, or someone else
        # completed it): the instance went on the hook's default result. An alert, not news.
        event = "hook_completed" if ok and result != "ABANDON" else "hook_abandoned"
        self._notify(event, target, record, outcome=Outcome(record.outcome or Outcome.DRAINED))

    def replacement_requested(self, target: str, record: DrainRecord) -> None:
        done = record.replacement
        if done is not None and done.raised:
            self._node(
                target,
                REPLACEMENT_REQUESTED,
                f"desired capacity of {done.group} raised: the replacement boots while we drain",
            )

    def given_back(self, target: str, record: DrainRecord) -> None:
        self._node(target, GIVEN_BACK, f"given back: {record.kind} cancelled or not followed up")

    # --- plumbing --------------------------------------------------------------------------

    def _node(self, target: str, reason: str, message: str, *, warning: bool = False) -> None:
        if self.events is not None:
            self.events.node(target, reason, message, warning=warning)

    def _notify(
        self,
        event: str,
        target: str,
        record: DrainRecord,
        progress: Progress | None = None,
        outcome: Outcome | None = None,
    ) -> None:
        if self._notifier is None:
            return
        progress = progress or Progress()
        self._notifier.post(
            Notification(
                event=event,
                node=target,
                instance=record.instance_id,
                kind=str(record.kind),
                deadline=record.deadline.isoformat(),
                cluster=self._cluster,
                pods_evicted=progress.evicted,
                pods_left=tuple(progress.left or ()),
                asg=record.hook.group if record.hook else None,
                hook=record.hook.name if record.hook else None,
                outcome=str(outcome) if outcome else None,
            )
        )


def _pods(left: list[str] | None) -> str:
    if left is None:
        return "its pods (not listed yet)"
    if not left:
        return "no pods"
    named = ", ".join(left[:LEFT_IN_MESSAGE])
    more = len(left) - LEFT_IN_MESSAGE
    return f"{len(left)} pod(s) ({named}{f', and {more} more' if more > 0 else ''})"
