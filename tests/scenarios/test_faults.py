"""One API error must never lose a warning or a drain.

A Spot warning goes in for a node running services and a non-idempotent job; exactly one
request on the notice or drain path fails (500, or 429 with Retry-After) at the Kubernetes
API, through a fault-injecting proxy in front of the emulator. The node must still be
cordoned and drained, the job requeued once, and the drain closed as `drained`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kubernetes_asyncio import client

from devstack.kube import KubeApiServer
from devstack.kube.server import write_kubeconfig
from lifecycled.app import running
from lifecycled.record import RECORD_ANNOTATION
from tests.faultproxy import Fault, FaultProxy
from tests.scenarios.conftest import Stack, eventually, metric, owner_kind, pods_on
from tests.scenarios.test_jobs import instance_on, job_manifest, start_job

SPOT = "spot_interruption"
NODES = r"/api/v1/nodes"
NODE = r"/api/v1/nodes/[^/]+"
PODS = r"/api/v1/pods"
EVICTION = r"/api/v1/namespaces/[^/]+/pods/[^/]+/eviction"
JOB = r"/apis/batch/v1/namespaces/batch/jobs/[^/]+"
JOBS = r"/apis/batch/v1/namespaces/batch/jobs"
EVENTS = r"/api/v1/namespaces/[^/]+/events"

# (call site, method, path, requests of that kind let through first)
CALL_SITES = [
    ("resolve: list nodes", "GET", NODES, 0),
    ("cordon: patch node", "PATCH", NODE, 0),
    ("vacate: list pods", "GET", PODS, 0),
    ("vacate: read job", "GET", JOB, 0),
    ("vacate: evict", "POST", EVICTION, 0),
    ("requeue: patch job", "PATCH", JOB, 0),
    ("requeue: create copy", "POST", JOBS, 0),
    ("requeue: event", "POST", EVENTS, 0),
    ("vacate: list pods later", "GET", PODS, 1),  # a drain always lists twice at least
    ("close: read node", "GET", NODE, 0),  # the cordon takes the node from the index
    ("close: patch node", "PATCH", NODE, 1),
]
CASES = (
    [
        pytest.param(method, path, skip, 500, id=f"{site} 500")
        for site, method, path, skip in CALL_SITES
    ]
    + [
        # 429 is throttling (API priority and fairness); at the eviction API it means a budget.
        pytest.param(method, path, skip, 429, id=f"{site} 429")
        for site, method, path, skip in CALL_SITES
        if path != EVICTION
    ][:6]
    + [
        # The cordon's copy of the node is stale: the guarded patch conflicts, is read afresh.
        pytest.param("PATCH", NODE, 0, 409, id="cordon: patch node 409"),
    ]
)


@pytest.mark.parametrize(("method", "path", "skip", "status"), CASES)
async def test_one_api_error_never_loses_the_warning(
    stack: Stack,
    kube: KubeApiServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    path: str,
    skip: int,
    status: int,
) -> None:
    _pod, node = await start_job(
        stack, job_manifest("fault-job", idempotent=False, run_seconds=None)
    )
    instance = instance_on(stack, node)
    async with FaultProxy(kube.url) as proxy:
        monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(proxy.url, tmp_path / "proxied")))
        async with running(stack.settings()) as service:
            fault = Fault(method, path, status=status, skip=skip, retry_after=1)
            proxy.faults.append(fault)  # armed now: start-up's own calls are not the target
            stack.aws.send_spot_interruption(instance)

            async def drained() -> bool:
                closed = "lifecycled_drain_duration_seconds_count"
                return metric(service, closed, kind=SPOT, outcome="drained") == 1

            await eventually(drained, within=45)
            assert fault.injected == 1, f"the fault never hit: {fault.seen} matching requests"
            left = [p for p in await pods_on(stack.api, node) if owner_kind(p) != "DaemonSet"]
            assert not left
            assert metric(service, "lifecycled_jobs_requeued_total", reason=SPOT) == 1
            assert metric(service, "lifecycled_duplicate_notices_total", kind=SPOT) == 0
    node_obj = await client.CoreV1Api(stack.api).read_node(node)
    assert node_obj.spec.unschedulable is True
    record = json.loads(node_obj.metadata.annotations[RECORD_ANNOTATION])
    assert (record["phase"], record["outcome"]) == ("done", "drained")
    copies = await client.BatchV1Api(stack.api).list_namespaced_job("batch")
    assert sorted(j.metadata.name for j in copies.items) == ["fault-job", "fault-job-requeue-1"]
