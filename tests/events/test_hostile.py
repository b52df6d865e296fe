"""Hostile and malformed bodies: each is refused with its reason code, quickly, without
raising, and without echoing the body."""

from __future__ import annotations

import json
import random
import time
from typing import Any

import pytest

from lifecycled.events import (
    MAX_BODY_BYTES,
    MAX_DEPTH,
    Ignored,
    Rejected,
    RejectReason,
    parse_message,
)
from lifecycled.model import Notice
from tests.events.conftest import FIXTURES, dumps, fixture_obj

R = RejectReason


def spot(**detail: Any) -> dict[str, Any]:
    obj = fixture_obj("spot_interruption.json")
    obj["detail"].update(detail)
    return obj


def without(obj: dict[str, Any], *path: str) -> dict[str, Any]:
    target = obj
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return obj


def replaced(obj: dict[str, Any], value: object, *path: str) -> dict[str, Any]:
    target = obj
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return obj


def sns_of(inner: str | dict[str, Any], **envelope: Any) -> dict[str, Any]:
    obj = fixture_obj("lifecycle_terminate_sns.json")
    obj["Message"] = inner if isinstance(inner, str) else json.dumps(inner)
    obj.update(envelope)
    return obj


def nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def as_body(value: bytes | str | dict[str, Any]) -> bytes | str:
    return dumps(value) if isinstance(value, dict) else value


HOSTILE: list[tuple[str, bytes | str | dict[str, Any], RejectReason]] = [
    ("over 1 MiB", b"{" + b" " * MAX_BODY_BYTES + b"}", R.TOO_LARGE),
    ("over 1 MiB as str", "{" + " " * MAX_BODY_BYTES + "}", R.TOO_LARGE),
    ("2-byte chars over 1 MiB", '{"a":"' + "é" * (MAX_BODY_BYTES // 2) + '"}', R.TOO_LARGE),
    ("too many containers", b"[" + b"[]," * 30_000 + b"[]]", R.TOO_LARGE),
    ("too many members", b"[" + b"1," * 200_000 + b"1]", R.TOO_LARGE),
    ("latin-1", b'{"a": "caf\xe9"}', R.NOT_UTF8),
    ("lone surrogate", '{"a": "\ud800"}', R.NOT_UTF8),
    ("binary", bytes(range(256)) * 16, R.NOT_UTF8),
    ("empty", b"", R.NOT_JSON),
    ("text", b"hello", R.NOT_JSON),
    ("truncated", b'{"source": "aws.ec2"', R.NOT_JSON),
    ("NaN", b'{"a": NaN}', R.NOT_JSON),
    ("Infinity", b'{"a": -Infinity}', R.NOT_JSON),
    ("huge integer", b'{"a": ' + b"9" * 5000 + b"}", R.NOT_JSON),
    ("1 MiB of [", b"[" * MAX_BODY_BYTES, R.TOO_DEEP),
    ("1 MiB of {", b"{" * MAX_BODY_BYTES, R.TOO_DEEP),
    ('1 MiB of {"a":', b'{"a":' * (MAX_BODY_BYTES // 5), R.TOO_DEEP),
    ("1 MiB of [1,", b"[1," * (MAX_BODY_BYTES // 3), R.TOO_DEEP),
    ("one level too deep", nested(MAX_DEPTH + 1), R.TOO_DEEP),
    ("deep inside SNS", sns_of(nested(MAX_DEPTH + 1).decode()), R.TOO_DEEP),
    ("duplicate key", b'{"source": "aws.ec2", "source": "my.app"}', R.DUPLICATE_KEYS),
    ("nested duplicate", b'{"detail": {"instance-id": "a", "instance-id": "b"}}', R.DUPLICATE_KEYS),
    ("duplicate inside SNS", sns_of('{"RequestId": "a", "RequestId": "b"}'), R.DUPLICATE_KEYS),
    ("array", b"[]", R.NOT_AN_OBJECT),
    ("string", b'"{}"', R.NOT_AN_OBJECT),
    ("null", b"null", R.NOT_AN_OBJECT),
    ("number", b"12", R.NOT_AN_OBJECT),
    ("SNS array", sns_of("[1]"), R.NOT_AN_OBJECT),
    ("SNS text", sns_of("Hello from SNS"), R.NOT_JSON),
    ("SNS confirmation", sns_of("{}", Type="SubscriptionConfirmation"), R.BAD_SNS_ENVELOPE),
    ("SNS without Message", without(sns_of("{}"), "Message"), R.BAD_SNS_ENVELOPE),
    ("SNS bad TopicArn", sns_of("{}", TopicArn="arn:aws:sqs:us-east-1:1:q"), R.BAD_SNS_ENVELOPE),
    ("SNS in SNS", sns_of(sns_of("{}")), R.BAD_SNS_ENVELOPE),
    ("SNS Message object", sns_of("{}", Message={"a": 1}), R.WRONG_TYPE),
    ("detail not object", replaced(spot(), "x", "detail"), R.WRONG_TYPE),
    ("instance-id number", spot(**{"instance-id": 12345678}), R.WRONG_TYPE),
    ("time number", replaced(spot(), 0, "time"), R.WRONG_TYPE),
    ("source array", replaced(spot(), ["aws.ec2"], "source"), R.WRONG_TYPE),
    ("very long id", replaced(spot(), "x" * 10_000, "id"), R.WRONG_TYPE),
    (
        "entities not a list",
        replaced(fixture_obj("health_scheduled_change.json"), {}, "detail", "affectedEntities"),
        R.WRONG_TYPE,
    ),
    (
        "entity not an object",
        replaced(
            fixture_obj("health_scheduled_change.json"),
            ["i-12345678"],
            "detail",
            "affectedEntities",
        ),
        R.WRONG_TYPE,
    ),
    ("no detail", without(spot(), "detail"), R.MISSING_FIELD),
    ("no time", without(spot(), "time"), R.MISSING_FIELD),
    ("no id", without(spot(), "id"), R.MISSING_FIELD),
    ("no detail-type", without(spot(), "detail-type"), R.MISSING_FIELD),
    ("no source", without(spot(), "source"), R.MISSING_FIELD),
    ("empty instance-id", spot(**{"instance-id": ""}), R.MISSING_FIELD),
    (
        "no startTime",
        without(fixture_obj("health_scheduled_change.json"), "detail", "startTime"),
        R.MISSING_FIELD,
    ),
    (
        "no token",
        without(
            fixture_obj("lifecycle_terminate_eventbridge.json"), "detail", "LifecycleActionToken"
        ),
        R.MISSING_FIELD,
    ),
    (
        "direct without RequestId",
        without(fixture_obj("lifecycle_terminate_direct.json"), "RequestId"),
        R.MISSING_FIELD,
    ),
    (
        "direct without Time",
        without(fixture_obj("lifecycle_terminate_direct.json"), "Time"),
        R.MISSING_FIELD,
    ),
    ("foreign source", replaced(spot(), "my.app", "source"), R.FOREIGN_SOURCE),
    ("AWS-like source, upper case", replaced(spot(), "aws.ECS", "source"), R.FOREIGN_SOURCE),
    ("AWS-like source, a dot more", replaced(spot(), "aws.ec2.x", "source"), R.FOREIGN_SOURCE),
    ("AWS-like source, too long", replaced(spot(), "aws." + "e" * 80, "source"), R.FOREIGN_SOURCE),
    ("bare aws.", replaced(spot(), "aws.", "source"), R.FOREIGN_SOURCE),
    (
        "other AWS source, no detail",
        without(replaced(spot(), "aws.s3", "source"), "detail"),
        R.MISSING_FIELD,
    ),
    (
        "other AWS source, no time",
        without(replaced(spot(), "aws.ecs", "source"), "time"),
        R.MISSING_FIELD,
    ),
    ("huge foreign source", replaced(spot(), "z" * 400, "source"), R.FOREIGN_SOURCE),
    (
        "foreign Service",
        replaced(fixture_obj("lifecycle_launch_direct.json"), "My App", "Service"),
        R.FOREIGN_SOURCE,
    ),
    ("short id", spot(**{"instance-id": "i-0123"}), R.BAD_INSTANCE_ID),
    ("9 hex", spot(**{"instance-id": "i-012345678"}), R.BAD_INSTANCE_ID),
    ("upper-case hex", spot(**{"instance-id": "i-0B662EF9931388BA0"}), R.BAD_INSTANCE_ID),
    ("not hex", spot(**{"instance-id": "i-0b662ef9931388bag"}), R.BAD_INSTANCE_ID),
    ("an ARN", spot(**{"instance-id": "arn:aws:ec2:::instance/i-12345678"}), R.BAD_INSTANCE_ID),
    ("trailing newline", spot(**{"instance-id": "i-12345678\n"}), R.BAD_INSTANCE_ID),
    (
        "bad Health entity",
        replaced(
            fixture_obj("health_scheduled_change.json"),
            [{"entityValue": "i-xyz"}],
            "detail",
            "affectedEntities",
        ),
        R.BAD_INSTANCE_ID,
    ),
    (
        "bad direct instance",
        replaced(fixture_obj("lifecycle_terminate_direct.json"), "i-1", "EC2InstanceId"),
        R.BAD_INSTANCE_ID,
    ),
    ("words", replaced(spot(), "yesterday", "time"), R.BAD_TIME),
    ("month 13", replaced(spot(), "2024-13-01T00:00:00Z", "time"), R.BAD_TIME),
    ("no zone", replaced(spot(), "2024-01-01T00:00:00", "time"), R.BAD_TIME),
    ("leap second", replaced(spot(), "2016-12-31T23:59:60Z", "time"), R.BAD_TIME),
    (
        "bad RFC 1123",
        replaced(
            fixture_obj("health_scheduled_change.json"),
            "Tue, 31 Nov 2024 12:00:00 GMT",
            "detail",
            "startTime",
        ),
        R.BAD_TIME,
    ),
    (
        "placeholder time (AWS docs)",
        replaced(
            fixture_obj("lifecycle_terminate_eventbridge.json"), "yyyy-mm-ddThh:mm:ssZ", "time"
        ),
        R.BAD_TIME,
    ),
    ("empty object", b"{}", R.UNKNOWN_FORMAT),
    ("someone else's JSON", b'{"order": 17, "items": []}', R.UNKNOWN_FORMAT),
    (
        "transition mismatch",
        replaced(
            fixture_obj("lifecycle_terminate_eventbridge.json"),
            "autoscaling:EC2_INSTANCE_LAUNCHING",
            "detail",
            "LifecycleTransition",
        ),
        R.UNKNOWN_FORMAT,
    ),
]


@pytest.mark.parametrize(
    ("body", "reason"), [(b, r) for _, b, r in HOSTILE], ids=[name for name, _, _ in HOSTILE]
)
def test_hostile_body_is_rejected(body: bytes | str | dict[str, Any], reason: RejectReason) -> None:
    result = parse_message(as_body(body))
    assert isinstance(result, Rejected), result
    assert result.reason is reason, result.detail
    assert 0 < len(result.detail) <= 120
    assert "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz" not in result.detail
    assert result.detail != "internal parser error"


def test_every_reject_reason_is_exercised() -> None:
    scope_only = {R.FOREIGN_ACCOUNT, R.FOREIGN_REGION}  # see test_scope.py
    assert {reason for _, _, reason in HOSTILE} == set(RejectReason) - scope_only


def test_depth_limit_is_inclusive() -> None:
    result = parse_message(nested(MAX_DEPTH))
    assert isinstance(result, Rejected)
    assert result.reason is R.UNKNOWN_FORMAT  # decoded fine; just not a notice


def test_brackets_inside_strings_do_not_count() -> None:
    obj = spot()
    obj["detail"]["note"] = "[" * 10_000 + "\\" + '"' + "{" * 10_000
    result = parse_message(dumps(obj))
    assert isinstance(result, Notice)


@pytest.mark.parametrize(
    ("body", "reason"),
    [(b, r) for _, b, r in HOSTILE if len(as_body(b)) > MAX_BODY_BYTES // 2],
    ids=[name for name, b, _ in HOSTILE if len(as_body(b)) > MAX_BODY_BYTES // 2],
)
def test_largest_bodies_are_refused_quickly(body: bytes | str, reason: RejectReason) -> None:
    # A loose bound, since CI machines vary; on a laptop each takes under 30 ms.
    start = time.perf_counter()
    result = parse_message(as_body(body))
    assert time.perf_counter() - start < 0.5
    assert isinstance(result, Rejected)
    assert result.reason is reason


def _mutations(rng: random.Random, raw: bytes) -> list[bytes]:
    out = []
    for _ in range(40):
        data = bytearray(raw)
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(data))
            choice = rng.random()
            if choice < 0.4:
                data[pos] = rng.randrange(256)
            elif choice < 0.7:
                del data[pos : pos + rng.randint(1, 8)]
            else:
                data[pos:pos] = rng.choice([b"[", b"{", b'"', b"\\", b",", b"null", b"1e999"])
        out.append(bytes(data))
    out.append(raw[: rng.randrange(len(raw))])
    return out


def _swap_types(rng: random.Random, value: object) -> object:
    if isinstance(value, dict):
        return {k: _swap_types(rng, v) for k, v in value.items()}
    if isinstance(value, list):
        return [_swap_types(rng, v) for v in value]
    if rng.random() < 0.15:
        return rng.choice([None, 0, -1.5, True, [], {}, "", "x" * 600, [value], {"v": value}])
    return value


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.json")), ids=lambda p: p.name)
def test_mutated_fixtures_never_raise(path: Any) -> None:
    """A deterministic stand-in for a property test (hypothesis is not installed)."""
    rng = random.Random(path.name)
    raw = path.read_bytes()
    bodies = _mutations(rng, raw)
    original = json.loads(raw)
    bodies += [dumps(_swap_types(rng, original)) for _ in range(40)]
    for body in bodies:
        result = parse_message(body)
        assert isinstance(result, Notice | Ignored | Rejected)
        if isinstance(result, Rejected):
            assert result.detail != "internal parser error", body[:200]
            assert len(result.detail) <= 120
