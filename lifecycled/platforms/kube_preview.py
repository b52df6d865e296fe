"""What a drain would do to each pod on a node, without doing it (dry run, `explain --node`).

The same rules as the drain's (`_Pods.decide` in kubernetes.py): `is_skipped`, then
`jobs.decide` for the time left to the deadline.
"""

from __future__ import annotations

from lifecycled.clients.kube import JsonDict
from lifecycled.jobs import Decision, decide
from lifecycled.platforms.kube_jobs import JobRequeuer
from lifecycled.platforms.kube_pods import PodRef, is_skipped

WHY = {
    Decision.EVICT: "evicted at once (its controller replaces it)",
    Decision.WAIT: "a job: waited for while the deadline is far",
    Decision.REQUEUE: "a non-idempotent job near the deadline: stopped and requeued once",
}
SKIPPED = {
    "mirror": "mirror (static) pod: cannot be evicted",
    "daemonset": "DaemonSet pod: stays until the machine goes",
    "self": "this handler's own pod",
    "finished": "already finished",
}


async def preview_pods(
    pods: list[JsonDict], jobs: JobRequeuer, *, remaining: float, stop_lead: float
) -> list[dict[str, str]]:
    plan: list[dict[str, str]] = []
    for pod in pods:
        ref = PodRef.of(pod)
        name = f"{ref.namespace}/{ref.name}"
        skipped = is_skipped(pod)
        if skipped is not None:
            plan.append({"pod": name, "do": "skip", "why": SKIPPED.get(skipped, skipped)})
            continue
        if ref.terminating:
            plan.append({"pod": name, "do": "wait", "why": "already terminating"})
            continue
        decision = decide(await jobs.workload(pod), remaining=remaining, stop_lead=stop_lead)
        plan.append({"pod": name, "do": decision.value, "why": WHY[decision]})
    return plan
