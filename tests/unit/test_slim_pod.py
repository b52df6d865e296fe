"""slim_pod: what a drain keeps of a listed pod, and the parts many pods share."""

from __future__ import annotations

from typing import Any

from lifecycled.platforms.kube_pods import PodRef, is_skipped, slim_pod


def listed(name: str, owner: str = "web-5d8f", **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "shop",
            "uid": f"uid-{name}",
            "labels": {"app": "web"},
            "annotations": {"lifecycled.io/job-idempotent": "true", "other.io/x": "y"},
            "ownerReferences": [
                {"kind": "ReplicaSet", "name": owner, "controller": True, "uid": "rs"},
            ],
        },
        "spec": {"terminationGracePeriodSeconds": 30, "containers": [{"name": "c"}]},
        "status": {"phase": "Running", "podIP": "10.0.0.9"},
        **extra,
    }


def test_keeps_what_a_drain_reads_and_nothing_else() -> None:
    slim = slim_pod(listed("web-1"))
    assert slim["metadata"] == {
        "name": "web-1",
        "uid": "uid-web-1",
        "namespace": "shop",
        "annotations": {"lifecycled.io/job-idempotent": "true"},
        "ownerReferences": [{"kind": "ReplicaSet", "name": "web-5d8f", "controller": True}],
    }
    assert slim["spec"] == {"terminationGracePeriodSeconds": 30}
    assert slim["status"] == {"phase": "Running"}
    assert PodRef.of(slim) == PodRef("shop", "web-1", "uid-web-1", terminating=False)
    assert is_skipped(slim) is None


def test_pods_alike_share_their_owner_grace_and_phase_but_not_their_metadata() -> None:
    one, two = slim_pod(listed("web-1")), slim_pod(listed("web-2"))
    assert one["metadata"]["ownerReferences"] is two["metadata"]["ownerReferences"]
    assert one["spec"] is two["spec"] and one["status"] is two["status"]
    assert one["metadata"]["annotations"] is two["metadata"]["annotations"]
    assert one["metadata"] is not two["metadata"]
    # A pod's metadata is its own: a write to one is not seen by the other.
    one["metadata"]["deletionTimestamp"] = "2026-12-07T00:00:00Z"
    assert "deletionTimestamp" not in two["metadata"]


def test_different_annotations_are_not_shared() -> None:
    plain = listed("web-6")
    plain["metadata"]["annotations"] = {"lifecycled.io/job-idempotent": "false"}
    assert slim_pod(plain)["metadata"]["annotations"] == {"lifecycled.io/job-idempotent": "false"}
    assert slim_pod(listed("web-7"))["metadata"]["annotations"] == {
        "lifecycled.io/job-idempotent": "true"
    }


def test_different_owners_and_phases_are_not_confused() -> None:
    other = slim_pod(listed("api-1", owner="api-77c1"))
    assert other["metadata"]["ownerReferences"][0]["name"] == "api-77c1"
    done = slim_pod(listed("web-3", status={"phase": "Succeeded"}))
    assert done["status"] == {"phase": "Succeeded"} and is_skipped(done) == "finished"
    going = slim_pod(listed("web-4"))
    going["metadata"]["deletionTimestamp"] = "2026-12-07T00:00:00Z"
    assert PodRef.of(going).terminating and not PodRef.of(slim_pod(listed("web-5"))).terminating
