"""The pure parts of the pod deadline, the checkpoint call and replace-ahead's record."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from lifecycled.model import Action, InstanceId, NoticeKind
from lifecycled.platforms.kube_notice import (
    DEADLINE_ANNOTATION,
    KIND_ANNOTATION,
    checkpoint_url,
    needs_notice,
    notice_annotations,
    rfc3339,
)
from lifecycled.platforms.kube_pods import slim_pod
from lifecycled.record import DrainRecord, Replacement, ReplacementState


def spot_record() -> DrainRecord:
    at = datetime(2026, 12, 7, 14, 48, 0, 700000, tzinfo=UTC)
    return DrainRecord(
        instance_id=InstanceId("i-0123456789abcdef0"),
        kind=NoticeKind.SPOT_INTERRUPTION,
        action=Action.DRAIN,
        event_id="e-1",
        event_time=at,
        deadline=at + timedelta(seconds=120),
    )


def pod(annotations: dict[str, str], ip: str | None = "10.0.0.7") -> dict[str, object]:
    return {
        "metadata": {"name": "p", "namespace": "batch", "uid": "u", "annotations": annotations},
        "status": {"phase": "Running", "podIP": ip},
    }


def test_the_deadline_is_rfc3339_utc_rounded_down() -> None:
    assert rfc3339(spot_record().deadline) == "2026-12-07T14:50:00Z"
    assert notice_annotations(spot_record()) == {
        DEADLINE_ANNOTATION: "2026-12-07T14:50:00Z",
        KIND_ANNOTATION: "spot_interruption",
    }


def test_a_pod_is_annotated_until_it_carries_this_deadline() -> None:
    wanted = notice_annotations(spot_record())
    assert needs_notice(pod({}), wanted)
    assert not needs_notice(pod(dict(wanted)), wanted)
    tighter = {**wanted, DEADLINE_ANNOTATION: "2026-12-07T14:49:00Z"}
    assert needs_notice(pod(dict(wanted)), tighter)
    going = pod({})
    going["metadata"]["deletionTimestamp"] = "2026-12-07T14:49:00Z"  # type: ignore[index]
    assert not needs_notice(going, wanted)


def test_the_checkpoint_url_comes_from_the_annotations_and_the_pod_ip() -> None:
    assert checkpoint_url(pod({})) is None
    port = {"lifecycled.io/checkpoint-port": "8080"}
    assert checkpoint_url(pod(port)) == "http://10.0.0.7:8080/checkpoint"
    with_path = {**port, "lifecycled.io/checkpoint-path": "save"}
    assert checkpoint_url(pod(with_path)) == "http://10.0.0.7:8080/save"
    assert checkpoint_url(pod(port, ip="fd00::7")) == "http://[fd00::7]:8080/checkpoint"
    assert checkpoint_url(pod(port, ip=None)) is None
    assert checkpoint_url(pod({"lifecycled.io/checkpoint-port": "http"})) is None
    assert checkpoint_url(pod({"lifecycled.io/checkpoint-port": "70000"})) is None


def test_the_slim_pod_keeps_its_ip_only_for_a_checkpoint_call() -> None:
    assert slim_pod(pod({}))["status"] == {"phase": "Running"}
    asks = pod({"lifecycled.io/checkpoint-port": "8080"})
    assert slim_pod(asks)["status"] == {"phase": "Running", "podIP": "10.0.0.7"}


def test_the_replacement_round_trips_and_old_records_read_without_one() -> None:
    original = spot_record()
    assert "replacement" not in original.to_json()
    assert DrainRecord.from_json(original.to_json()).replacement is None
    raised = replace(
        original, replacement=Replacement("workers", ReplacementState.REQUESTED, raised=True)
    )
    assert DrainRecord.from_json(raised.to_json()) == raised
