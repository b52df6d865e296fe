"""docs/iam-ecs.json grants exactly the AWS operations lifecycled calls in ECS mode.

Every AWS call goes through `self._call(operation)` of a service client in clients/aws/ (its
class names the `service`); the methods called as `aws.<service>.<method>(` by the modules that
run in ECS mode (the SQS source, the coordinator, drains, lifecycle hooks, the ECS platform)
give the operations; botocore names their actions.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import botocore.session

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "lifecycled"
# Kubernetes-only modules do not run in ECS mode.
NOT_IN_ECS_MODE = (
    "platforms/kubernetes.py",
    "platforms/kube_jobs.py",
    "platforms/kube_lb.py",
    "replace.py",  # replace-ahead: wired for Kubernetes only
    "sources/imds.py",
    "clients/",
    "preflight.py",  # `lifecycled check`, not the service
)
IAM_PREFIX = {"elbv2": "elasticloadbalancing", "elb": "elasticloadbalancing"}
# Not an API call, but RunTask needs it for task definitions with task/execution roles.
IMPLIED = {"iam:PassRole"}
# AWS allows these to every principal (GetCallerIdentity: "no permissions are required").
NEEDS_NO_GRANT = {"sts:GetCallerIdentity"}


def service_of(client: ast.ClassDef) -> str | None:
    """A service client class's `service = "..."`; None for any other class."""
    for item in client.body:
        if (
            isinstance(item, ast.Assign)
            and isinstance(item.targets[0], ast.Name)
            and item.targets[0].id == "service"
            and isinstance(item.value, ast.Constant)
        ):
            return str(item.value.value)
    return None


def operations_by_method() -> dict[str, set[tuple[str, str]]]:
    """Service client method -> the (service, operation) pairs it passes to `_call`."""
    found: dict[str, set[tuple[str, str]]] = {}
    for path in sorted((PACKAGE / "clients" / "aws").glob("*.py")):
        for client in ast.parse(path.read_text()).body:
            if not isinstance(client, ast.ClassDef) or (service := service_of(client)) is None:
                continue
            for method in client.body:
                if not isinstance(method, ast.AsyncFunctionDef | ast.FunctionDef):
                    continue
                for node in ast.walk(method):
                    if (
                        isinstance(node, ast.Call)
                        and isinstance(node.func, ast.Attribute)
                        and node.func.attr == "_call"
                    ):
                        operation = node.args[0].value  # type: ignore[attr-defined]
                        found.setdefault(method.name, set()).add((service, operation))
    return found


def called(method: str, services: set[str], text: str) -> bool:
    """`aws.<service>.<method>(` somewhere in `text`."""
    return any(re.search(rf"aws\.{s}\.{method}\(", text) for s in services)


def used_in_ecs_mode(by_method: dict[str, set[tuple[str, str]]]) -> set[str]:
    used: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE).as_posix()
        if any(relative.startswith(p) or relative == p for p in NOT_IN_ECS_MODE):
            continue
        text = path.read_text()
        used |= {m for m, calls in by_method.items() if called(m, {s for s, _ in calls}, text)}
    return used


# SQS authorizes its batch calls by the single call's action.
AUTHORIZED_AS = {"DeleteMessageBatch": "DeleteMessage", "SendMessageBatch": "SendMessage"}


def iam_action(service: str, operation: str) -> str:
    model = botocore.session.get_session().get_service_model(service)
    api = {botocore.xform_name(name): name for name in model.operation_names}[operation]
    return f"{IAM_PREFIX.get(service, service)}:{AUTHORIZED_AS.get(api, api)}"


def policy_actions(name: str = "iam-ecs.json") -> set[str]:
    policy = json.loads((ROOT / "docs" / name).read_text())
    actions: set[str] = set()
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        listed = statement["Action"]
        actions |= {listed} if isinstance(listed, str) else set(listed)
    return actions


def test_the_policy_grants_exactly_what_ecs_mode_calls() -> None:
    by_method = operations_by_method()
    used = used_in_ecs_mode(by_method)
    assert {"receive", "stop_task", "deregister_targets", "complete_lifecycle_action"} <= used
    needed = {iam_action(s, o) for m in used for s, o in by_method[m]}
    granted = policy_actions()
    assert not any("*" in a for a in granted), "no wildcard actions"
    assert needed - granted - NEEDS_NO_GRANT == set(), "called but not granted"
    assert granted - needed - IMPLIED == set(), "granted but never called"
