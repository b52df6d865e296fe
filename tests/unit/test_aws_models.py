"""The trimmed AWS service models (tools/aws_models.py): shipped for every operation we call,
found by botocore before its own, and behind a user's own AWS_DATA_PATH."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest

from lifecycled.clients.aws import base
from lifecycled.settings import Settings
from tests.unit.tools import load_tool


def _tool() -> ModuleType:
    return load_tool("aws_models")


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_DATA_PATH", raising=False)


def test_every_ec2_operation_we_call_is_in_the_shipped_model() -> None:
    assert _tool().main([]) == 0, "run: python tools/aws_models.py --write"


def test_a_call_missing_from_the_model_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    tool = _tool()
    monkeypatch.setattr(tool, "called", lambda service: {"describe_instances", "create_tags"})
    assert tool.problems() == ["ec2: create_tags is called but not in service-2.json"]


def test_the_trim_keeps_what_the_operation_reaches_and_no_documentation() -> None:
    import botocore.loaders

    tool = _tool()
    full = botocore.loaders.Loader().load_service_model("ec2", "service-2")
    trimmed = tool.trim(full, {"describe_instances"})
    assert list(trimmed["operations"]) == ["DescribeInstances"]
    assert "Instance" in trimmed["shapes"] and "Tag" in trimmed["shapes"]
    assert "RunInstancesRequest" not in trimmed["shapes"]
    assert "documentation" not in json.dumps(trimmed)
    with pytest.raises(SystemExit, match="no_such_call"):
        tool.trim(full, {"no_such_call"})


async def test_the_service_ec2_client_uses_the_trimmed_model(aws_env: None) -> None:
    settings = Settings(queue_url="http://q", region="us-east-1")
    async with base.open_clients(settings, ("ec2", "sqs")) as clients:
        assert clients["ec2"].meta.service_model.operation_names == ["DescribeInstances"]
        assert "ReceiveMessage" in clients["sqs"].meta.service_model.operation_names


async def test_a_users_data_path_comes_first(
    aws_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AWS_DATA_PATH", str(tmp_path))
    session = base.get_session()
    base._add_trimmed_models(session)
    paths = session.get_config_variable("data_path").split(":")
    assert paths == [str(tmp_path), str(base.TRIMMED_MODELS)]
