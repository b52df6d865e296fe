"""Jobs first: hooks are held while jobs run; non-idempotent jobs are requeued exactly once."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from kubernetes_asyncio import client

from devstack.cluster import DEVSTACK
from tests.scenarios.conftest import Stack, eventually, metric, pods_on

SPOT = "spot_interruption"


def job_manifest(
    name: str,
    *,
    idempotent: bool | None,
    run_seconds: float | None,
    annotations: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    pod_annotations = {DEVSTACK + "exit-seconds": "0.3"}
    if run_seconds is not None:
        pod_annotations[DEVSTACK + "run-seconds"] = str(run_seconds)
    job_annotations = dict(annotations or {})
    if idempotent is not None:
        job_annotations["lifecycled.io/idempotent"] = str(idempotent).lower()
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": "batch",
            "annotations": job_annotations,
            "labels": {"team": "research"},
        },
        "spec": {
            "backoffLimit": 3,
            "template": {
                "metadata": {"annotations": pod_annotations, "labels": {"app": name}},
                "spec": {
                    "restartPolicy": "Never",
                    "terminationGracePeriodSeconds": 5,
                    "containers": [
                        {
                            "name": "main",
                            "image": "example.com/pipeline:1",
                            "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
                        }
                    ],
                },
            },
        },
    }


async def start_job(stack: Stack, manifest: dict[str, Any]) -> tuple[str, str]:
    """Create the Job; return (pod name, node) once its pod runs."""
    batch = client.BatchV1Api(stack.api)
    await batch.create_namespaced_job("batch", manifest)
    core = client.CoreV1Api(stack.api)
    name = manifest["metadata"]["name"]
    found: list[tuple[str, str]] = []

    async def running() -> bool:
        pods = (await core.list_namespaced_pod("batch", label_selector=f"job-name={name}")).items
        for pod in pods:
            if pod.status.phase == "Running" and pod.spec.node_name:
                found.append((pod.metadata.name, pod.spec.node_name))
                return True
        return False

    await eventually(running)
    return found[0]


async def start_on_pool(
    stack: Stack, machine: Any, pool: str, manifest: dict[str, Any]
) -> tuple[str, str]:
    """A node of its own for `machine` (tainted and labelled `pool`), and the Job on it:
    (pod name, node) once its pod runs."""
    name = machine.private_dns_name
    await client.CoreV1Api(stack.api).create_node(
        {
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "pool": pool}},
            "spec": {
                "providerID": f"aws:///{machine.az}/{machine.id}",
                "taints": [{"key": "pool", "value": pool, "effect": "NoSchedule"}],
            },
            "status": {"conditions": [{"type": "Ready", "status": "True"}]},
        }
    )
    manifest["spec"]["template"]["spec"]["nodeSelector"] = {"pool": pool}
    manifest["spec"]["template"]["spec"]["tolerations"] = [{"key": "pool", "operator": "Exists"}]
    return await start_job(stack, manifest)


def instance_on(stack: Stack, node: str) -> str:
    return next(i for i, n in stack.node_of.items() if n == node)


def spot_drained(service: Any) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        closed = "lifecycled_drain_duration_seconds_count"
        return metric(service, closed, kind=SPOT, outcome="drained") == 1

    return check


async def jobs_named(stack: Stack, prefix: str) -> list[Any]:
    jobs = (await client.BatchV1Api(stack.api).list_namespaced_job("batch")).items
    return [j for j in jobs if j.metadata.name.startswith(prefix)]


async def test_hook_is_held_with_heartbeats_while_a_job_runs_and_released_when_it_ends(
    stack: Stack, service_for
) -> None:
    # Heartbeat timeout 4 s: the job runs 7 s, so without heartbeats the hook would time out.
    group = stack.group + "-hb"
    instances = stack.aws.create_group(group, size=1, heartbeat_timeout=4)
    machine = instances[0]
    manifest = job_manifest("nightly", idempotent=False, run_seconds=7)
    pod_name, node = await start_on_pool(stack, machine, "batch", manifest)
    assert node == machine.private_dns_name

    async with service_for() as service:
        stack.aws.calls.clear()
        stack.aws.scale_in(group, machine.id)
        finished_at: list[float] = []
        seen_running: list[float] = []

        async def job_finished() -> bool:
            asked = time.monotonic()
            pod = await client.CoreV1Api(stack.api).read_namespaced_pod(pod_name, "batch")
            if pod.status.phase == "Succeeded":
                finished_at.append(time.monotonic())
                return True
            seen_running.append(asked)
            return False

        await eventually(job_finished, within=20, every=0.05)
        # The job was never evicted or requeued: it ran to its end.
        assert metric(service, "lifecycled_jobs_requeued_total", reason="lifecycle_terminate") == 0

        async def released() -> bool:
            return stack.aws.lifecycle_state(machine.id) is None

        await eventually(released, within=10)
        completes = stack.aws.calls.of("CompleteLifecycleAction")
        assert len(completes) == 1
        # Never released while the job was seen running; soon after it ended.
        assert completes[0].time > seen_running[-1]
        assert completes[0].time - finished_at[0] < 3.0
        heartbeats = stack.aws.calls.of("RecordLifecycleActionHeartbeat")
        assert len(heartbeats) >= 2
        assert all(c.status == 200 for c in heartbeats)
        assert metric(service, "lifecycled_lifecycle_heartbeats_total", outcome="ok") >= 2
        assert metric(service, "lifecycled_jobs_waited_seconds_count") == 1
        assert "Terminating:Proceed" in stack.aws.transitions(machine.id)


async def test_a_non_idempotent_job_under_a_spot_warning_is_requeued_exactly_once(
    stack: Stack, service_for
) -> None:
    manifest = job_manifest(
        "train",
        idempotent=False,
        run_seconds=None,
        annotations={"lifecycled.io/checkpoint-keys": "TIMEPOINT"},
        env={"TIMEPOINT": "2023-10-01", "WORKSPACE": "s3://bucket/train"},
    )
    _, node = await start_job(stack, manifest)
    instance = instance_on(stack, node)
    sqs = stack.aws.boto3_client("sqs")

    async with service_for() as service:
        event = stack.aws.send_spot_interruption(instance)
        sqs.send_message(QueueUrl=stack.queue.url, MessageBody=json.dumps(event))  # duplicate

        async def requeued() -> bool:
            return metric(service, "lifecycled_jobs_requeued_total", reason=SPOT) == 1

        await eventually(requeued, within=20)

        await eventually(spot_drained(service), within=20)
        copies = await jobs_named(stack, "train-requeue-")
        assert [c.metadata.name for c in copies] == ["train-requeue-1"]
        copy = copies[0]
        assert copy.metadata.annotations["lifecycled.io/requeue-of"] == "train"
        assert copy.metadata.annotations["lifecycled.io/attempt"] == "1"
        assert copy.metadata.annotations["lifecycled.io/reason"] == SPOT
        assert json.loads(copy.metadata.annotations["lifecycled.io/checkpoint"]) == {
            "TIMEPOINT": "2023-10-01"
        }
        env = {e.name: e.value for e in copy.spec.template.spec.containers[0].env}
        assert env == {"TIMEPOINT": "2023-10-01", "WORKSPACE": "s3://bucket/train"}
        assert copy.metadata.labels["team"] == "research"
        original = await client.BatchV1Api(stack.api).read_namespaced_job("train", "batch")
        assert original.spec.suspend is True
        record = json.loads(original.metadata.annotations["lifecycled.io/requeue"])
        assert record["done"] is True and record["copy"] == "train-requeue-1"

        # Events (docs/events.md): the Job's "Requeued" names its copy; so does its pod's.
        async def requeue_events() -> list[tuple[str, str, str]]:
            items = (await client.CoreV1Api(stack.api).list_namespaced_event("batch")).items
            return [
                (e.involved_object.kind, e.involved_object.name, e.message)
                for e in items
                if e.reason == "Requeued"
            ]

        async def told() -> bool:
            return {"Job", "Pod"} <= {kind for kind, _, _ in await requeue_events()}

        await eventually(told, within=10)
        found = await requeue_events()
        assert [m for k, n, m in found if k == "Job" and n == "train"] == [
            f"interrupted ({SPOT}); requeued as train-requeue-1, attempt 1"
        ]
        assert all(n.startswith("train-") for k, n, _ in found if k == "Pod")

        async def copy_runs_elsewhere() -> bool:
            pods = (
                await client.CoreV1Api(stack.api).list_namespaced_pod(
                    "batch", label_selector="job-name=train-requeue-1"
                )
            ).items
            return any(
                p.status.phase == "Running" and p.spec.node_name not in (None, node) for p in pods
            )

        await eventually(copy_runs_elsewhere)
        # The original's pod is gone from the draining node; nothing else of it remains.
        assert not [
            p
            for p in await pods_on(stack.api, node)
            if (p.metadata.labels or {}).get("job-name") == "train"
        ]


async def test_an_idempotent_job_is_evicted_and_retried_by_its_controller(
    stack: Stack, service_for
) -> None:
    manifest = job_manifest("thumbnails", idempotent=True, run_seconds=None)
    manifest["spec"]["podFailurePolicy"] = {
        "rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]
    }
    pod_name, node = await start_job(stack, manifest)
    async with service_for() as service:
        stack.aws.send_spot_interruption(instance_on(stack, node))

        async def replaced_elsewhere() -> bool:
            pods = (
                await client.CoreV1Api(stack.api).list_namespaced_pod(
                    "batch", label_selector="job-name=thumbnails"
                )
            ).items
            return any(
                p.metadata.name != pod_name
                and p.spec.node_name not in (None, node)
                and p.status.phase == "Running"
                for p in pods
            )

        await eventually(replaced_elsewhere, within=20)
        assert not await jobs_named(stack, "thumbnails-requeue-")
        assert metric(service, "lifecycled_jobs_requeued_total", reason=SPOT) == 0


async def test_the_requeue_loop_stops_at_the_attempt_limit(stack: Stack, service_for) -> None:
    # This job is already the third requeue of an earlier one.
    manifest = job_manifest(
        "etl-requeue-3",
        idempotent=False,
        run_seconds=None,
        annotations={"lifecycled.io/attempt": "3", "lifecycled.io/requeue-of": "etl-requeue-2"},
    )
    _, node = await start_job(stack, manifest)
    async with service_for(requeue_max_attempts=3) as service:
        stack.aws.send_spot_interruption(instance_on(stack, node))

        async def limited() -> bool:
            return metric(service, "lifecycled_requeue_limit_reached_total") == 1

        await eventually(limited, within=20)

        await eventually(spot_drained(service), within=20)
        assert not await jobs_named(stack, "etl-requeue-4")
        events = (await client.CoreV1Api(stack.api).list_namespaced_event("batch")).items
        assert any(
            e.reason == "RequeueLimitReached" and e.involved_object.name == "etl-requeue-3"
            for e in events
        )


async def test_the_longest_hold_running_out_requeues_and_releases_the_hook(
    stack: Stack, service_for
) -> None:
    manifest = job_manifest("forever", idempotent=False, run_seconds=None)
    _, node = await start_job(stack, manifest)
    instance = instance_on(stack, node)
    async with service_for(lifecycle_max_hold_seconds=10, job_stop_lead_seconds=6) as service:
        stack.aws.scale_in(stack.group, instance)

        async def released() -> bool:
            return stack.aws.lifecycle_state(instance) is None

        await eventually(released, within=25)
        assert metric(service, "lifecycled_hook_hold_exceeded_total") == 1
        assert metric(service, "lifecycled_jobs_requeued_total", reason="lifecycle_terminate") == 1
        assert [j.metadata.name for j in await jobs_named(stack, "forever-requeue-")] == [
            "forever-requeue-1"
        ]
        events = (await client.CoreV1Api(stack.api).list_namespaced_event("default")).items
        assert any(e.reason == "HoldExceeded" and e.involved_object.name == node for e in events)


async def test_with_requeueing_off_a_non_idempotent_job_is_evicted_not_copied(
    stack: Stack, service_for
) -> None:
    # LIFECYCLED_REQUEUE_ENABLED=false (the chart's jobs.requeue.enabled=false, whose RBAC
    # has no pod/job create): the job is handled as an idempotent one; its Job retries it.
    manifest = job_manifest("render", idempotent=False, run_seconds=None)
    manifest["spec"]["podFailurePolicy"] = {
        "rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]
    }
    _, node = await start_job(stack, manifest)
    async with service_for(requeue_enabled=False) as service:
        stack.aws.send_spot_interruption(instance_on(stack, node))
        await eventually(spot_drained(service), within=20)
        assert metric(service, "lifecycled_evictions_total", outcome="evicted") >= 1
        assert metric(service, "lifecycled_jobs_requeued_total", reason=SPOT) == 0
        assert not await jobs_named(stack, "render-requeue-")
        original = await client.BatchV1Api(stack.api).read_namespaced_job("render", "batch")
        assert not original.spec.suspend
        assert "lifecycled.io/requeue" not in (original.metadata.annotations or {})


async def test_requeueing_is_limited_to_the_named_namespaces(stack: Stack, service_for) -> None:
    # The job runs in `batch`; only `ml` may be requeued in (a namespaced Role, say).
    manifest = job_manifest("etl", idempotent=False, run_seconds=None)
    _, node = await start_job(stack, manifest)
    async with service_for(requeue_namespaces="ml") as service:
        stack.aws.send_spot_interruption(instance_on(stack, node))
        await eventually(spot_drained(service), within=20)
        assert metric(service, "lifecycled_jobs_requeued_total", reason=SPOT) == 0
        assert not await jobs_named(stack, "etl-requeue-")
