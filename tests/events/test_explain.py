"""`lifecycled explain`: exactly the documented object (explain.py's docstring), and its exit
codes."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from lifecycled.events import MAX_BODY_BYTES
from lifecycled.explain import explain, scope_from_env
from lifecycled.explain_cli import main
from tests.events.conftest import FIXTURES, fixture_bytes

NOTICE_KEYS = [
    "kind",
    "instance_ids",
    "region",
    "account",
    "event_id",
    "event_time",
    "deadline",
    "lifecycle",
    "state",
    "action",
]


def run(
    argv: list[str], capsys: pytest.CaptureFixture[str], stdin: bytes | None = None
) -> tuple[int, dict[str, object]]:
    if stdin is not None:
        sys.stdin = io.TextIOWrapper(io.BytesIO(stdin))
    code = main(argv)
    out = capsys.readouterr().out
    assert out.count("\n") == 1, "exactly one JSON line"
    obj = json.loads(out)
    assert isinstance(obj, dict)
    return code, obj


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIFECYCLED_ALLOWED_ACCOUNTS", raising=False)
    monkeypatch.delenv("LIFECYCLED_REGION", raising=False)
    monkeypatch.setattr(sys, "stdin", sys.stdin)  # restored after tests that replace it


def test_spot_object() -> None:
    code, obj = explain(fixture_bytes("spot_interruption.json"))
    assert code == 0
    assert list(obj) == NOTICE_KEYS
    assert obj == {
        "kind": "spot_interruption",
        "instance_ids": ["i-0b662ef9931388ba0"],
        "region": "us-east-1",
        "account": "123456789012",
        "event_id": "1e5527d7-bb36-4607-3370-4164db56a40e",
        "event_time": "1970-01-01T00:00:00Z",
        "deadline": "1970-01-01T00:02:00Z",
        "lifecycle": None,
        "state": "terminate",
        "action": "drain",
    }


def test_lifecycle_object() -> None:
    code, obj = explain(fixture_bytes("lifecycle_terminate_sns.json"))
    assert code == 0
    assert list(obj) == NOTICE_KEYS
    assert obj == {
        "kind": "lifecycle_terminate",
        "instance_ids": ["i-040107f6ba000e5ee"],
        "region": "us-west-2",
        "account": "123456789012",
        "event_id": "3775fac9-93c3-7ead-8713-159816566000",
        "event_time": "2022-01-31T23:07:47.872000Z",
        "deadline": None,
        "lifecycle": {
            "hook_name": "test-nth-asg-to-sqs",
            "group_name": "my-asg",
            "token": "b4dd0f5b-0ef2-4479-9dad-6c55f027000e",
            "transition": "autoscaling:EC2_INSTANCE_TERMINATING",
        },
        "state": None,
        "action": "drain",
    }


@pytest.mark.parametrize(
    ("name", "action"),
    [
        ("rebalance_recommendation.json", "cordon"),
        ("state_change_stopping.json", "drain"),
        ("health_scheduled_change_multi.json", "drain"),
        ("lifecycle_launch_eventbridge.json", "complete-hook"),
        ("test_notification_direct.json", "none"),
    ],
)
def test_actions(name: str, action: str) -> None:
    code, obj = explain(fixture_bytes(name))
    assert code == 0
    assert list(obj) == NOTICE_KEYS
    assert obj["action"] == action


def test_health_object() -> None:
    _, obj = explain(fixture_bytes("health_scheduled_change_multi.json"))
    assert obj["instance_ids"] == ["i-12345678", "i-abcd2222"]
    assert obj["deadline"] == "2016-06-05T15:10:09Z"
    assert obj["state"] is None


def test_ignored_object() -> None:
    code, obj = explain(fixture_bytes("state_change_pending.json"))
    assert code == 0
    assert list(obj) == [*NOTICE_KEYS, "ignored", "detail"]
    assert obj["kind"] == "instance_state_change"
    assert obj["instance_ids"] == ["i-abcd1111"]
    assert obj["state"] == "pending"
    assert obj["action"] == "none"
    assert obj["ignored"] == "unhandled_state"
    assert obj["event_time"] == "2015-11-11T21:29:54Z"


def test_ignored_without_kind() -> None:
    code, obj = explain(fixture_bytes("health_issue_instance_store.json"))
    assert code == 0
    assert obj["kind"] is None
    assert obj["instance_ids"] == []
    assert obj["action"] == "none"
    assert obj["ignored"] == "unhandled_health_event"


def test_rejected_object() -> None:
    code, obj = explain(fixture_bytes("foreign_source_aha.json"))
    assert code == 2
    assert obj == {"rejected": "foreign_source", "detail": "event.source 'aha' is not ours"}


def test_scope() -> None:
    body = fixture_bytes("spot_interruption.json")
    assert explain(body, allowed_accounts=frozenset({"123456789012"}), region="us-east-1")[0] == 0
    code, obj = explain(body, allowed_accounts=frozenset({"1"}))
    assert (code, obj["rejected"]) == (2, "foreign_account")
    code, obj = explain(body, region="eu-west-1")
    assert (code, obj["rejected"]) == (2, "foreign_region")


def test_main_with_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    code, obj = run([str(FIXTURES / "lifecycle_launch_direct.json")], capsys)
    assert code == 0
    assert obj["kind"] == "lifecycle_launch"
    assert obj["action"] == "complete-hook"


def test_main_with_stdin(capsys: pytest.CaptureFixture[str]) -> None:
    code, obj = run(["-"], capsys, stdin=fixture_bytes("rebalance_recommendation.json"))
    assert (code, obj["kind"]) == (0, "rebalance_recommendation")


def test_main_rejects_from_stdin(capsys: pytest.CaptureFixture[str]) -> None:
    code, obj = run(["-"], capsys, stdin=b"[" * MAX_BODY_BYTES)
    assert code == 2
    assert obj["rejected"] == "too_deep"


def test_main_reads_a_bounded_amount(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (3 * MAX_BODY_BYTES))
    code, obj = run([str(big)], capsys)
    assert (code, obj["rejected"]) == (2, "too_large")


def test_main_with_a_temp_file_and_scope_from_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    body = tmp_path / "body.json"
    body.write_bytes(fixture_bytes("spot_interruption_sns.json"))
    monkeypatch.setenv("LIFECYCLED_ALLOWED_ACCOUNTS", " 111111111111 , 123456789012,,")
    monkeypatch.setenv("LIFECYCLED_REGION", "us-east-1")
    assert run([str(body)], capsys)[0] == 0
    monkeypatch.setenv("LIFECYCLED_REGION", "ap-south-1")
    code, obj = run([str(body)], capsys)
    assert (code, obj["rejected"]) == (2, "foreign_region")
    monkeypatch.setenv("LIFECYCLED_ALLOWED_ACCOUNTS", "111111111111")
    code, obj = run([str(body)], capsys)
    assert (code, obj["rejected"]) == (2, "foreign_account")


def test_scope_from_env() -> None:
    assert scope_from_env({}) == (frozenset(), None)
    assert scope_from_env({"LIFECYCLED_ALLOWED_ACCOUNTS": "", "LIFECYCLED_REGION": " "}) == (
        frozenset(),
        None,
    )
    assert scope_from_env(
        {"LIFECYCLED_ALLOWED_ACCOUNTS": "1, 2", "LIFECYCLED_REGION": "us-east-1"}
    ) == (frozenset({"1", "2"}), "us-east-1")


def test_main_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "nope.json")]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "cannot read" in captured.err


def test_main_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage" in capsys.readouterr().err


def test_python_dash_m(tmp_path: Path) -> None:
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "lifecycled.explain_cli", str(FIXTURES / "spot_interruption.json")],
        capture_output=True,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["kind"] == "spot_interruption"
