"""The invariants every chaos run must keep, checked from what the emulators recorded (the
Kubernetes API request log, the AWS call log, the queues) and what the service logged."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from kubernetes_asyncio import client

from tests.chaos.harness import Run, log_lines

NODE_WRITE = re.compile(r"/api/v1/nodes/([^/]+)")


def queue_depth(run: Run, url: str) -> int:
    reply = run.aws.boto3_client("sqs").get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )
    return sum(int(v) for v in reply["Attributes"].values())


def messages_accounted(run: Run) -> list[str]:
    """Every message acted on (deleted) or in the DLQ: nothing left in the queue."""
    left = queue_depth(run, run.queue.url)
    return [f"{left} messages still in the queue"] if left else []


def warned_nodes_settled(run: Run, closed: set[str]) -> list[str]:
    """Every warned node drained, or its failure reported (a closing outcome in the log, or
    the closed record on the node when a SIGKILL came before the log line)."""
    settled = run.settled() | closed
    out = [f"{i} ({run.node(i)}) never settled" for i in sorted(run.warned - settled)]
    cordoned = {str(line.get("node")) for line in run.logs.events("node cordoned")}
    drained = {
        str(line["instance"])
        for line in run.logs.events("drain finished")
        if line.get("outcome") == "drained"
    }
    out += [f"{i} drained but never cordoned" for i in drained if run.node(i) not in cordoned]
    return out


def nothing_touched_without_notice(run: Run) -> list[str]:
    warned = {run.node(i) for i in run.warned}
    out = []
    for record in run.kube.requests:
        if record.method in ("PATCH", "PUT", "DELETE"):
            found = NODE_WRITE.fullmatch(record.path)
            if found and found.group(1) not in warned:
                out.append(f"{record.method} on unwarned node {found.group(1)}")
    for line in run.logs.events("pod evicted"):
        if line.get("node") not in warned:
            out.append(f"pod {line.get('pod')} evicted from unwarned node {line.get('node')}")
    return sorted(set(out))


def hooks_once_after_drain(run: Run) -> list[str]:
    """Each hook completed exactly once (200 from Auto Scaling), and never before its node's
    pods were gone: no eviction on the node is logged after the completion."""
    mine = {m.instance_id for m in run.machines}  # the call log spans the session's runs
    completed = Counter(
        call.params.get("InstanceId")
        for call in run.aws.calls.of("CompleteLifecycleAction")
        if call.status == 200 and call.params.get("InstanceId") in mine
    )
    out = [f"hook of {i} completed {completed[i]} times" for i in run.hooked if completed[i] != 1]
    out += [f"hook of {i} completed, not held by us" for i in completed if i not in run.hooked]
    for instance in run.hooked:
        node = run.node(instance)
        done = [
            str(line["time"])
            for line in run.logs.events("lifecycle action completed")
            if line.get("instance") == instance
        ]
        evicted = [
            str(line["time"]) for line in run.logs.events("pod evicted") if line.get("node") == node
        ]
        if done and evicted and max(evicted) > min(done):
            out.append(f"hook of {instance} completed before its node's last eviction")
    return out


async def pods_left(run: Run) -> list[str]:
    """Drained means no evictable pod is left on the node."""
    core = client.CoreV1Api(run.api)
    out = []
    for line in run.logs.events("drain finished"):
        if line.get("outcome") != "drained":
            continue
        node = str(line["node"])
        reply = await core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node}")
        left = [p for p in reply.items if not is_daemon(p)]
        if left:
            out.append(f"{node} drained with {len(left)} pods left")
    return sorted(set(out))


def is_daemon(pod: Any) -> bool:
    refs = pod.metadata.owner_references or []
    return bool(refs) and refs[0].kind == "DaemonSet"


def jobs_requeued_once(run: Run) -> list[str]:
    copies = Counter(str(line.get("job")) for line in run.logs.events("job requeued"))
    return [f"job {job} requeued {n} times" for job, n in copies.items() if n > 1]


def forced_counted(run: Run) -> list[str]:
    """A machine terminated under an open drain closes it as forced_termination."""
    forced = {
        str(line["instance"])
        for line in run.logs.events("drain finished")
        if line.get("outcome") == "forced_termination"
    }
    expected = {i for i in run.warned if run.aws.ec2_state(i) == "terminated"} - run.hooked
    drained = run.settled() - forced
    return [f"{i} terminated, not counted as forced" for i in expected - forced - drained]


def no_traceback(run: Run) -> list[str]:
    raw = [line for line in log_lines(run.workdir) if "Traceback" in line]
    return [f"{len(raw)} log lines with a traceback"] if raw else []


CHECKS = (
    messages_accounted,
    nothing_touched_without_notice,
    hooks_once_after_drain,
    jobs_requeued_once,
    forced_counted,
    no_traceback,
)


async def check(run: Run) -> list[str]:
    violations = [v for rule in CHECKS for v in rule(run)]
    violations += warned_nodes_settled(run, await run.closed_records())
    return violations + await pods_left(run)
