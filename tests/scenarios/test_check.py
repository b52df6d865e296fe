"""`lifecycled check` against the embedded stack: all ok when everything is in place, and the
right failing line for each thing taken away (redrive policy, a rule, an RBAC verb, a hook)."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from devstack.aws import AwsStack
from devstack.kube import KubeApiServer
from lifecycled import cli
from lifecycled.clients.aws.ecs import EcsClient
from lifecycled.errors import PermanentError
from lifecycled.preflight import Check, run_checks
from lifecycled.rules import EVENT_RULES
from lifecycled.settings import Settings

_names = itertools.count()


def _world(aws: AwsStack, *, dlq: bool = True, hook: str | None = "drain") -> tuple[Any, str]:
    n = f"check-{next(_names)}"
    queue = aws.create_queue(n, dlq=dlq)
    aws.route_events_to(queue)
    aws.create_group(n, size=1, terminate_hook=hook, tags={f"kubernetes.io/cluster/{n}": "owned"})
    return queue, n


def _settings(queue: Any, cluster: str, **extra: Any) -> Settings:
    return Settings(queue_url=queue.url, cluster_name=cluster, **extra)


def _by_status(checks: list[Check], status: str) -> list[str]:
    return [c.name for c in checks if c.status == status]


async def test_everything_in_place_is_all_ok(aws_env: AwsStack, kube: KubeApiServer) -> None:
    queue, cluster = _world(aws_env)
    checks = await run_checks(_settings(queue, cluster))
    assert _by_status(checks, "fail") == [] and _by_status(checks, "warn") == []
    names = {c.name for c in checks}
    assert {"aws credentials", "queue", "queue redrive policy", "queue policy"} <= names
    assert {f"eventbridge rule {r.pattern['detail-type'][0]}" for r in EVENT_RULES} <= names
    assert f"terminate hook {cluster}" in names
    assert {"rbac create pods/eviction", "rbac patch nodes", "rbac delete pods"} <= names
    assert {"rbac get jobs", "rbac create events", "rbac patch events"} <= names


async def test_a_queue_without_redrive_policy_fails(aws_env: AwsStack, kube: KubeApiServer) -> None:
    queue, cluster = _world(aws_env, dlq=False)
    checks = await run_checks(_settings(queue, cluster))
    assert _by_status(checks, "fail") == ["queue redrive policy"]
    (line,) = [c for c in checks if c.status == "fail"]
    assert "no dead-letter queue" in line.detail and "redrive policy" in line.fix


async def test_a_missing_rule_fails(aws_env: AwsStack, kube: KubeApiServer) -> None:
    queue, cluster = _world(aws_env)
    events = aws_env.boto3_client("events")
    target_id = queue.arn.rsplit(":", 1)[-1][:64]
    events.remove_targets(Rule="lifecycled-spot-interruption", Ids=[target_id])
    checks = await run_checks(_settings(queue, cluster))
    assert _by_status(checks, "fail") == ["eventbridge rule EC2 Spot Instance Interruption Warning"]
    assert (
        "create rule lifecycled-spot-interruption"
        in checks[[c.status for c in checks].index("fail")].line()
    )


async def test_a_missing_rbac_verb_fails(aws_env: AwsStack, kube: KubeApiServer) -> None:
    queue, cluster = _world(aws_env)
    kube.deny("create", "pods", subresource="eviction")
    checks = await run_checks(_settings(queue, cluster))
    assert _by_status(checks, "fail") == ["rbac create pods/eviction"]


async def test_leases_are_checked_with_leader_election(
    aws_env: AwsStack, kube: KubeApiServer
) -> None:
    queue, cluster = _world(aws_env)
    kube.deny("update", "leases", group="coordination.k8s.io")
    checks = await run_checks(
        _settings(queue, cluster, leader_election=True, lease_namespace="kube-system")
    )
    assert _by_status(checks, "fail") == ["rbac update leases in kube-system"]


async def test_the_lease_is_asked_for_by_name(aws_env: AwsStack, kube: KubeApiServer) -> None:
    # The chart's Role grants get and update on its one Lease (resourceNames): a review that
    # names no Lease would be refused, and check would fail on a correct Role.
    queue, cluster = _world(aws_env)
    group = "coordination.k8s.io"
    for verb in ("get", "update"):
        kube.only_named(verb, "leases", {"lifecycled-lease"}, group=group)
    ha = {"leader_election": True, "lease_namespace": "kube-system"}
    settings = _settings(queue, cluster, lease_name="lifecycled-lease", **ha)
    checks = await run_checks(settings)
    assert _by_status(checks, "fail") == []
    assert {"rbac get leases in kube-system", "rbac update leases in kube-system"} <= {
        c.name for c in checks
    }
    checks = await run_checks(_settings(queue, cluster, lease_name="another", **ha))
    assert _by_status(checks, "fail") == [
        "rbac get leases in kube-system",
        "rbac update leases in kube-system",
    ]


# pods patch is not among them: the interruption-deadline annotations need it either way.
REQUEUE_ONLY = [("create", "pods"), ("delete", "pods"), ("get", "pods")]


async def test_requeueing_off_needs_no_requeue_verbs(
    aws_env: AwsStack, kube: KubeApiServer
) -> None:
    # The chart's jobs.requeue.enabled=false ClusterRole: no pod create/delete, no job create.
    queue, cluster = _world(aws_env)
    for verb, resource in REQUEUE_ONLY:
        kube.deny(verb, resource)
    kube.deny("create", "jobs", group="batch")
    kube.deny("patch", "jobs", group="batch")
    checks = await run_checks(_settings(queue, cluster, requeue_enabled=False))
    assert _by_status(checks, "fail") == []
    assert not {"rbac create pods", "rbac delete pods", "rbac create jobs"} & {
        c.name for c in checks
    }
    checks = await run_checks(_settings(queue, cluster))  # requeueing on: they are needed
    assert {"rbac create pods", "rbac delete pods", "rbac create jobs"} <= set(
        _by_status(checks, "fail")
    )


async def test_requeue_namespaces_are_checked_in_each(
    aws_env: AwsStack, kube: KubeApiServer
) -> None:
    # jobs.requeue.namespaces: the requeue verbs come from a Role in each namespace.
    queue, cluster = _world(aws_env)
    settings = _settings(queue, cluster, requeue_namespaces="batch,etl")
    checks = await run_checks(settings)
    assert _by_status(checks, "fail") == []
    names = {c.name for c in checks}
    assert {"rbac create pods in batch", "rbac create jobs in etl"} <= names
    assert "rbac create pods" not in names
    kube.deny("create", "jobs", group="batch", namespace="etl")
    checks = await run_checks(settings)
    assert _by_status(checks, "fail") == ["rbac create jobs in etl"]
    assert "in a Role in etl" in next(c.fix for c in checks if c.status == "fail")


async def test_a_group_without_terminate_hook_fails(aws_env: AwsStack, kube: KubeApiServer) -> None:
    queue, cluster = _world(aws_env, hook=None)
    checks = await run_checks(_settings(queue, cluster))
    assert _by_status(checks, "fail") == [f"terminate hook {cluster}"]
    assert "put-lifecycle-hook" in next(c.fix for c in checks if c.status == "fail")


async def test_a_missing_queue_fails(aws_env: AwsStack, kube: KubeApiServer) -> None:
    queue, cluster = _world(aws_env)
    settings = Settings(queue_url=queue.url + "-gone", cluster_name=cluster)
    checks = await run_checks(settings)
    assert _by_status(checks, "fail") == ["queue"]


def test_the_command_prints_json_and_exits_non_zero_on_a_failure(
    aws_env: AwsStack, capsys: pytest.CaptureFixture[str]
) -> None:
    ok, cluster = _world(aws_env)
    aws_env.create_ecs_cluster(cluster, [])
    argv = [
        "check",
        "--output",
        "json",
        "--platform",
        "ecs",
        "--ecs-clusters",
        cluster,
        "--owner-tag",
        f"kubernetes.io/cluster/{cluster}",
    ]
    assert cli.main([*argv, "--queue-url", ok.url]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and all(c["status"] == "ok" for c in report["checks"])
    bad, _ = _world(aws_env, dlq=False)
    assert cli.main([*argv, "--queue-url", bad.url]) == cli.EXIT_CHECK_FAILED
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False
    assert [c["name"] for c in report["checks"] if c["status"] == "fail"] == [
        "queue redrive policy"
    ]


async def test_ecs_mode_reads_its_clusters(
    aws_env: AwsStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue, cluster = _world(aws_env)
    aws_env.create_ecs_cluster(cluster, [])
    # AWS answers ClusterNotFoundException for a cluster that is not there; moto answers [].
    listed = EcsClient.list_container_instances

    async def list_container_instances(self: EcsClient, name: str) -> list[str]:
        if name.startswith("gone-"):
            raise PermanentError(f"ecs ListContainerInstances: ClusterNotFoundException: {name}")
        return await listed(self, name)

    monkeypatch.setattr(EcsClient, "list_container_instances", list_container_instances)
    settings = _settings(queue, cluster, platform="ecs", ecs_clusters=f"{cluster},gone-{cluster}")
    checks = await run_checks(settings)
    assert f"ecs cluster {cluster}" in _by_status(checks, "ok")
    assert _by_status(checks, "fail") == [f"ecs cluster gone-{cluster}"]
    assert not any(c.name.startswith("rbac") for c in checks)  # no Kubernetes in ECS mode


def test_text_output_is_one_line_per_check(
    aws_env: AwsStack, capsys: pytest.CaptureFixture[str]
) -> None:
    bad, cluster = _world(aws_env, dlq=False)
    argv = ["check", "--platform", "ecs", "--cluster-name", cluster, "--queue-url", bad.url]
    assert cli.main(argv) == cli.EXIT_CHECK_FAILED
    lines = capsys.readouterr().out.splitlines()
    assert any(
        line.startswith("fail queue redrive policy: ") and " -> add a redrive" in line
        for line in lines
    )
    assert all(line.split(" ", 1)[0] in ("ok", "warn", "fail") for line in lines)


async def test_daemonset_mode_needs_an_imds_token(
    kube: KubeApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from devstack.imds import ImdsEmulator

    async with ImdsEmulator(instance_id="i-0123456789abcdef0") as imds:
        for key, value in imds.env().items():
            monkeypatch.setenv(key, value)
        settings = Settings(source="imds", node_name="node-1", api_timeout_seconds=0.5)
        checks = await run_checks(settings)
        assert _by_status(checks, "fail") == []
        assert "imds token" in _by_status(checks, "ok")
        # A hop limit of 1 seen from a pod: the token's reply never arrives.
        imds.delay(3, times=10, path="api/token")
        checks = await run_checks(settings)
        assert _by_status(checks, "fail") == ["imds token"]
        assert "HttpPutResponseHopLimit" in next(c.fix for c in checks if c.status == "fail")
