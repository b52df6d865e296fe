"""The emulators in processes of their own: `python -m devstack.kube` with its admin API
(KubeApiProcess), `python -m devstack.aws` (AwsStackProcess), and subnets big enough for
storm-sized groups."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kubernetes_asyncio import client, config

from devstack.aws import AwsStack
from devstack.aws.process import AwsStackProcess
from devstack.kube.process import AdminError, KubeApiProcess
from devstack.kube.seeding import Machine, Shape, deployment_sizes, manifests

from .aws_fixtures import aws_fixture

_FIXTURES = (aws_fixture,)


def test_shapes_add_up_to_the_pods_asked_for() -> None:
    shape = Shape(nodes=1000)
    assert shape.total_pods == 20_000
    assert (shape.job_pods, shape.deployment_pods) == (100, 18_900)
    assert sum(deployment_sizes(shape)) == shape.deployment_pods
    kinds = [m["kind"] for m in manifests(Shape(nodes=3, pods_per_node=20))]
    assert kinds.count("Node") == 3 and kinds.count("DaemonSet") == 1
    assert kinds.count("Deployment") == kinds.count("PodDisruptionBudget") == 2
    machines = [Machine("ip-10-0-0-9.ec2.internal", "i-0123", "us-east-1b")]
    node = next(m for m in manifests(Shape(nodes=1), machines) if m["kind"] == "Node")
    assert node["spec"]["providerID"] == "aws:///us-east-1b/i-0123"
    with pytest.raises(ValueError):
        Shape.from_json({"nodes": 1, "bogus": 2})


async def test_kube_emulator_in_its_own_process(tmp_path: Path) -> None:
    with KubeApiProcess(kubeconfig=tmp_path / "kubeconfig") as kube:
        assert kube.url.startswith("http://127.0.0.1:") and kube.pid is not None
        seeded = kube.seed(Shape(nodes=5), wait=True)
        assert seeded["ready"] and seeded["errors"] == [] and seeded["expected_pods"] == 100
        stats = kube.stats()
        assert stats["pods"]["ready"] == 100 and stats["objects"]["nodes"] == 5
        assert stats["controllers"]["enabled"] and stats["scheduler"]["queued"] == 0

        configuration = client.Configuration()
        await config.load_kube_config(str(kube.kubeconfig), client_configuration=configuration)
        async with client.ApiClient(configuration) as api:
            core = client.CoreV1Api(api)
            nodes = sorted(n.metadata.name for n in (await core.list_node()).items)
            assert len(nodes) == 5
            listed = await core.list_pod_for_all_namespaces(
                field_selector=f"spec.nodeName={nodes[0]}"
            )
            assert len(listed.items) == 20
        summary = kube.request_summary()
        assert summary["list nodes 200"] == 1 and summary["list pods 200"] == 1
        recorded = kube.requests()
        assert recorded["next"] == 2
        assert [r["verb"] for r in recorded["items"]] == ["list", "list"]

        node = kube.set_node_ready(nodes[0], False)
        ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "False"
        kube.delete_node(nodes[1])
        assert kube.wait(pods_ready=80, quiet_seconds=0.2, timeout=30)["ok"]
        with pytest.raises(AdminError) as err:
            kube.admin("GET", "nothing-here")
        assert err.value.status == 404
        created = kube.create_objects(
            [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}]
        )
        assert created == {"created": 1, "errors": []}
        process = kube._proc
    assert process is not None and process.poll() is not None  # stopped


def test_aws_stack_in_its_own_process() -> None:
    with AwsStackProcess(queue="proc-test", groups={"proc-spot": 2}, spot=True) as aws:
        assert aws.endpoint_url.startswith("http://127.0.0.1:")
        assert aws.queue_url and aws.env["AWS_ACCESS_KEY_ID"] == "testing"
        instances = aws.instances["proc-spot"]
        assert len(instances) == 2 and all(i.id.startswith("i-") for i in instances)
        assert instances[0].private_ip.startswith("10.0.")
        stack = aws.stack()
        assert stack.lifecycle_state(instances[0].id) == "InService"
        described = stack.instance(instances[0].id)
        assert described.private_dns_name == instances[0].private_dns_name
        stack.send_spot_interruption(instances[0].id)
        sqs = stack.boto3_client("sqs")
        got = sqs.receive_message(QueueUrl=aws.queue_url, WaitTimeSeconds=2)["Messages"]
        body = json.loads(got[0]["Body"])
        assert body["detail-type"] == "EC2 Spot Instance Interruption Warning"
        assert body["detail"]["instance-id"] == instances[0].id


def test_subnets_fit_storm_sized_groups(aws: AwsStack) -> None:
    ids = aws._ensure_subnets()
    subnets = aws.boto3_client("ec2").describe_subnets(SubnetIds=ids)["Subnets"]
    assert sorted(s["AvailabilityZone"][-1] for s in subnets) == ["a", "b", "c"]
    assert all(s["AvailableIpAddressCount"] >= 16_000 for s in subnets)
