"""docs/iam-kubernetes.json grants exactly the AWS operations lifecycled calls on Kubernetes.

The same derivation as test_iam_ecs.py: every service client's `_call(operation)` reached as
`aws.<service>.<method>(` from the modules that run in Kubernetes mode, queue (SQS) and
DaemonSet (IMDS) sources alike.
"""

from __future__ import annotations

from tests.platforms import test_iam_ecs as derive
from tests.platforms.test_iam_ecs import NEEDS_NO_GRANT

# ECS-only modules do not run in Kubernetes mode; `lifecycled check` (preflight.py) is not the
# service: its reads are documented on their own and only warn when not granted.
NOT_IN_KUBERNETES_MODE = ("platforms/ecs/", "clients/", "preflight.py")


def used_in_kubernetes_mode(by_method: dict[str, set[tuple[str, str]]]) -> set[str]:
    used: set[str] = set()
    for path in derive.PACKAGE.rglob("*.py"):
        relative = path.relative_to(derive.PACKAGE).as_posix()
        if relative.startswith(NOT_IN_KUBERNETES_MODE):
            continue
        text = path.read_text()
        used |= {
            m for m, calls in by_method.items() if derive.called(m, {s for s, _ in calls}, text)
        }
    return used


def test_the_policy_grants_exactly_what_kubernetes_mode_calls() -> None:
    by_method = derive.operations_by_method()
    used = used_in_kubernetes_mode(by_method)
    assert {"receive", "describe_instances", "terminating_hooks", "send_message"} <= used
    assert not used & {"stop_task", "run_task", "list_clusters"}, "ECS calls leaked"
    needed = {derive.iam_action(s, o) for m in used for s, o in by_method[m]}
    granted = derive.policy_actions("iam-kubernetes.json")
    assert not any("*" in a for a in granted), "no wildcard actions"
    assert needed - granted - NEEDS_NO_GRANT == set(), "called but not granted"
    assert granted - needed == set(), "granted but never called"
