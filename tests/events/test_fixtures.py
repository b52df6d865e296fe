"""Every real payload parses to the expected notice."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from lifecycled.events import (
    Ignored,
    IgnoreReason,
    Rejected,
    RejectReason,
    default_action,
    parse_message,
)
from lifecycled.model import Action, LifecycleAction, Notice, NoticeKind
from tests.events.conftest import FIXTURES, dumps, fixture_bytes, fixture_obj


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


def notice(name: str) -> Notice:
    result = parse_message(fixture_bytes(name))
    assert isinstance(result, Notice), result
    return result


def test_every_fixture_is_covered() -> None:
    names = {p.name for p in FIXTURES.glob("*.json")}
    assert names == set(EXPECTED_KINDS) | set(EXPECTED_OTHER)


EXPECTED_KINDS = {
    "spot_interruption.json": NoticeKind.SPOT_INTERRUPTION,
    "spot_interruption_sns.json": NoticeKind.SPOT_INTERRUPTION,
    "rebalance_recommendation.json": NoticeKind.REBALANCE_RECOMMENDATION,
    "state_change_stopping.json": NoticeKind.INSTANCE_STATE_CHANGE,
    "health_scheduled_change.json": NoticeKind.SCHEDULED_CHANGE,
    "health_scheduled_change_multi.json": NoticeKind.SCHEDULED_CHANGE,
    "lifecycle_terminate_eventbridge.json": NoticeKind.LIFECYCLE_TERMINATE,
    "lifecycle_terminate_direct.json": NoticeKind.LIFECYCLE_TERMINATE,
    "lifecycle_terminate_sns.json": NoticeKind.LIFECYCLE_TERMINATE,
    "lifecycle_launch_eventbridge.json": NoticeKind.LIFECYCLE_LAUNCH,
    "lifecycle_launch_direct.json": NoticeKind.LIFECYCLE_LAUNCH,
    "lifecycle_launch_sns.json": NoticeKind.LIFECYCLE_LAUNCH,
    "test_notification_eventbridge.json": NoticeKind.TEST_NOTIFICATION,
    "test_notification_direct.json": NoticeKind.TEST_NOTIFICATION,
}
EXPECTED_OTHER: dict[str, Ignored | Rejected] = {
    "state_change_pending.json": Ignored(IgnoreReason.UNHANDLED_STATE, ""),
    "health_issue_instance_store.json": Ignored(IgnoreReason.UNHANDLED_HEALTH_EVENT, ""),
    "foreign_source_aha.json": Rejected(RejectReason.FOREIGN_SOURCE, ""),
}


@pytest.mark.parametrize("name", sorted(EXPECTED_KINDS))
def test_fixture_kind(name: str) -> None:
    assert notice(name).kind is EXPECTED_KINDS[name]


@pytest.mark.parametrize("name", sorted(EXPECTED_OTHER))
def test_fixture_not_a_notice(name: str) -> None:
    result = parse_message(fixture_bytes(name))
    expected = EXPECTED_OTHER[name]
    assert type(result) is type(expected)
    assert isinstance(result, Ignored | Rejected)
    assert result.reason is expected.reason
    assert 0 < len(result.detail) <= 120


@pytest.mark.parametrize("name", ["spot_interruption.json", "spot_interruption_sns.json"])
def test_spot(name: str) -> None:
    n = notice(name)
    assert n.instance_ids == ("i-0b662ef9931388ba0",)
    assert n.event_id == "1e5527d7-bb36-4607-3370-4164db56a40e"
    assert n.event_time == utc(1970, 1, 1)
    assert n.deadline == utc(1970, 1, 1, 0, 2)
    assert (n.account, n.region) == ("123456789012", "us-east-1")  # the event's, not the topic's
    assert n.state == "terminate"
    assert n.lifecycle is None
    assert default_action(n) is Action.DRAIN


def test_rebalance() -> None:
    n = notice("rebalance_recommendation.json")
    assert n.instance_ids == ("i-0b662ef9931388ba0",)
    assert n.deadline is None
    assert n.event_time == utc(2020, 10, 26, 14, 14, 14)
    assert default_action(n) is Action.CORDON
    assert default_action(n, rebalance_action=Action.DRAIN) is Action.DRAIN


def test_state_change_stopping() -> None:
    n = notice("state_change_stopping.json")
    assert n.instance_ids == ("i-abcd1111",)
    assert n.state == "stopping"
    assert n.deadline is None
    assert default_action(n) is Action.DRAIN


@pytest.mark.parametrize(
    ("state", "action"),
    [
        ("stopping", Action.DRAIN),
        ("shutting-down", Action.DRAIN),
        ("stopped", Action.RECORD),
        ("terminated", Action.RECORD),
    ],
)
def test_state_change_handled_states(state: str, action: Action) -> None:
    obj = fixture_obj("state_change_pending.json")
    obj["detail"]["state"] = state
    result = parse_message(dumps(obj))
    assert isinstance(result, Notice)
    assert result.state == state
    assert default_action(result) is action


@pytest.mark.parametrize("state", ["pending", "running", "creating"])
def test_state_change_other_states_are_ignored(state: str) -> None:
    obj = fixture_obj("state_change_pending.json")
    obj["detail"]["state"] = state
    result = parse_message(dumps(obj))
    assert isinstance(result, Ignored)
    assert result.reason is IgnoreReason.UNHANDLED_STATE
    assert result.kind is NoticeKind.INSTANCE_STATE_CHANGE
    assert result.instance_ids == ("i-abcd1111",)
    assert result.state == state
    assert result.event_id == "7bf73129-1428-4cd3-a780-95db273d1602"


def test_health_scheduled_change() -> None:
    n = notice("health_scheduled_change.json")
    assert n.instance_ids == ("i-12345678",)
    assert n.deadline == utc(2016, 6, 5, 15, 10, 9)
    assert n.event_time == utc(2016, 6, 5, 6, 27, 57)
    assert n.account == "account id"  # verbatim AWS example; the format is not checked
    assert not n.cancelled
    assert default_action(n) is Action.DRAIN


def test_health_names_several_instances() -> None:
    n = notice("health_scheduled_change_multi.json")
    assert n.instance_ids == ("i-12345678", "i-abcd2222")


def test_health_repeated_and_non_instance_entities() -> None:
    obj = fixture_obj("health_scheduled_change_multi.json")
    entities = obj["detail"]["affectedEntities"]
    entities.insert(0, {"entityValue": "h-0123456789abcdef0"})  # a dedicated host
    entities.append({"entityValue": "i-12345678"})
    result = parse_message(dumps(obj))
    assert isinstance(result, Notice)
    assert result.instance_ids == ("i-12345678", "i-abcd2222")


def test_health_with_only_hosts_is_ignored() -> None:
    obj = fixture_obj("health_scheduled_change.json")
    obj["detail"]["affectedEntities"] = [{"entityValue": "h-0123456789abcdef0"}]
    result = parse_message(dumps(obj))
    assert isinstance(result, Ignored)
    assert result.reason is IgnoreReason.UNHANDLED_HEALTH_EVENT


@pytest.mark.parametrize(
    ("status", "cancelled"),
    [("closed", True), ("cancelled", True), ("upcoming", False), ("open", False)],
)
def test_health_status(status: str, cancelled: bool) -> None:
    obj = fixture_obj("health_scheduled_change.json")
    obj["detail"]["statusCode"] = status
    result = parse_message(dumps(obj))
    assert isinstance(result, Notice)
    assert result.state == status
    assert result.cancelled is cancelled
    assert default_action(result) is (Action.NONE if cancelled else Action.DRAIN)


@pytest.mark.parametrize(
    ("field", "value"), [("service", "RDS"), ("eventTypeCategory", "accountNotification")]
)
def test_health_other_events_are_ignored(field: str, value: str) -> None:
    obj = fixture_obj("health_scheduled_change.json")
    obj["detail"][field] = value
    result = parse_message(dumps(obj))
    assert isinstance(result, Ignored)
    assert result.reason is IgnoreReason.UNHANDLED_HEALTH_EVENT


def test_health_rfc3339_start_time() -> None:
    obj = fixture_obj("health_scheduled_change.json")
    obj["detail"]["startTime"] = "2016-06-05T17:10:09.5+02:00"
    result = parse_message(dumps(obj))
    assert isinstance(result, Notice)
    assert result.deadline == utc(2016, 6, 5, 15, 10, 9, 500000)


@pytest.mark.parametrize(
    ("name", "lifecycle", "instance", "event_id"),
    [
        (
            "lifecycle_terminate_eventbridge.json",
            LifecycleAction(
                "cluster-termination-handler",
                "testt1.demo-0a20f32c.kops.sh",
                "0befcbdb-6ecd-498a-9ff7-ae9b54447cd6",
                "autoscaling:EC2_INSTANCE_TERMINATING",
            ),
            "i-0633ac2b0d9769723",
            "782d5b4c-0f6f-1fd6-9d62-ecf6aed0a470",
        ),
        (
            "lifecycle_launch_eventbridge.json",
            LifecycleAction(
                "node-termination-handler-launch",
                "nth-test1",
                "524632c5-3333-d52d-3992-d9633ec24ed7",
                "autoscaling:EC2_INSTANCE_LAUNCHING",
            ),
            "i-0a68bf5ef13e21b52",
            "83c632dd-0145-1ab0-ae93-a756ebf429b5",
        ),
        (
            "lifecycle_terminate_direct.json",
            LifecycleAction(
                "test-nth-asg-to-sqs",
                "my-asg",
                "b4dd0f5b-0ef2-4479-9dad-6c55f027000e",
                "autoscaling:EC2_INSTANCE_TERMINATING",
            ),
            "i-040107f6ba000e5ee",
            "3775fac9-93c3-7ead-8713-159816566000",
        ),
        (
            "lifecycle_launch_direct.json",
            LifecycleAction(
                "my-hook",
                "my-asg",
                "71514b9d-6a40-4b26-8523-05e7ee35fa40",
                "autoscaling:EC2_INSTANCE_LAUNCHING",
            ),
            "i-0598c7d356eba48d7",
            "18b2ec17-3e9b-4c15-8024-ff2e8ce8786a",
        ),
    ],
)
def test_lifecycle(name: str, lifecycle: LifecycleAction, instance: str, event_id: str) -> None:
    n = notice(name)
    assert n.lifecycle == lifecycle
    assert n.instance_ids == (instance,)
    assert n.event_id == event_id
    assert n.deadline is None  # the hook's timeout is read from the group later
    expected = Action.DRAIN if "terminate" in name else Action.COMPLETE_HOOK
    assert default_action(n) is expected
    sns = parse_message(fixture_bytes(name.replace("eventbridge", "sns").replace("direct", "sns")))
    if "direct" in name:  # the same message wrapped in SNS parses to the same lifecycle
        assert isinstance(sns, Notice)
        assert (sns.lifecycle, sns.instance_ids, sns.event_id) == (lifecycle, (instance,), event_id)


def test_direct_message_fields() -> None:
    n = notice("lifecycle_launch_direct.json")
    assert n.event_time == utc(2019, 4, 30, 20, 42, 11, 305000)
    assert (n.account, n.region) == ("123456789012", None)
    t = notice("lifecycle_terminate_direct.json")
    assert (t.account, t.region) == (None, None)


def test_sns_envelope_supplies_region_and_account() -> None:
    launch = notice("lifecycle_launch_sns.json")
    assert (launch.account, launch.region) == ("123456789012", "us-west-2")
    terminate = notice("lifecycle_terminate_sns.json")
    assert (terminate.account, terminate.region) == ("123456789012", "us-west-2")


def test_sns_message_id_is_only_a_fallback() -> None:
    envelope = fixture_obj("lifecycle_terminate_sns.json")
    inner = fixture_obj("lifecycle_terminate_direct.json")
    del inner["RequestId"]
    envelope["Message"] = dumps(inner).decode()
    result = parse_message(dumps(envelope))
    assert isinstance(result, Notice)
    assert result.event_id == "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324"


@pytest.mark.parametrize(
    "name", ["test_notification_eventbridge.json", "test_notification_direct.json"]
)
def test_test_notification(name: str) -> None:
    n = notice(name)
    assert n.instance_ids == ()
    assert n.lifecycle is None
    assert default_action(n) is Action.NONE


def test_direct_test_notification_from_the_hook() -> None:
    # The shape Auto Scaling sends when a hook is created (no instance, no transition).
    body = {
        "AccountId": "123456789012",
        "RequestId": "b36d6757-57c7-11e8-a9ca-b3409db76d91",
        "AutoScalingGroupARN": "arn:aws:autoscaling:us-west-2:123456789012:autoScalingGroup:"
        "d3ab46f5-9274-4f34-8141-87b0384f69ec:autoScalingGroupName/my-asg",
        "AutoScalingGroupName": "my-asg",
        "Service": "AWS Auto Scaling",
        "Event": "autoscaling:TEST_NOTIFICATION",
        "Time": "2018-05-14T22:39:45.555Z",
    }
    result = parse_message(dumps(body))
    assert isinstance(result, Notice)
    assert result.kind is NoticeKind.TEST_NOTIFICATION
    assert (result.account, result.region) == ("123456789012", "us-west-2")


def test_resources_are_never_trusted() -> None:
    obj = fixture_obj("spot_interruption.json")
    obj["resources"] = ["arn:aws:ec2:us-east-1:123456789012:instance/i-0ffffffffffffffff"]
    result = parse_message(dumps(obj))
    assert isinstance(result, Notice)
    assert result.instance_ids == ("i-0b662ef9931388ba0",)
    del obj["detail"]["instance-id"]
    missing = parse_message(dumps(obj))
    assert isinstance(missing, Rejected)
    assert missing.reason is RejectReason.MISSING_FIELD


def test_unknown_detail_type_from_known_source_is_ignored() -> None:
    obj = fixture_obj("lifecycle_terminate_eventbridge.json")
    obj["detail-type"] = "EC2 Instance Terminate Successful"
    result = parse_message(dumps(obj))
    assert isinstance(result, Ignored)
    assert result.reason is IgnoreReason.UNHANDLED_DETAIL_TYPE
    assert result.event_id == "782d5b4c-0f6f-1fd6-9d62-ecf6aed0a470"


def test_asg_group_notification_is_ignored() -> None:
    body = fixture_obj("lifecycle_launch_direct.json")
    del body["LifecycleTransition"]
    body["Event"] = "autoscaling:EC2_INSTANCE_TERMINATE"
    result = parse_message(dumps(body))
    assert isinstance(result, Ignored)
    assert result.reason is IgnoreReason.UNHANDLED_TRANSITION


def test_raw_sns_delivery_is_the_inner_message() -> None:
    envelope = fixture_obj("spot_interruption_sns.json")
    raw = parse_message(envelope["Message"])
    wrapped = parse_message(dumps(envelope))
    assert raw == wrapped
