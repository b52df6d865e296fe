"""Settings in groups, spelt outside by their flat names: LIFECYCLED_<NAME>, --<name>."""

from __future__ import annotations

from typing import Any

import pytest

from lifecycled import cli
from lifecycled.errors import ConfigError
from lifecycled.settings import ENVIRONMENT, SETTINGS, Drain, Settings, load_settings

Q = {"queue_url": "http://q"}


def test_every_setting_is_read_from_its_own_variable() -> None:
    for name, setting in SETTINGS.items():
        assert setting.env[0] == f"LIFECYCLED_{name.upper()}"
    assert len(SETTINGS) >= 86  # none dropped (more may come)
    assert SETTINGS["node_name"].env == ("LIFECYCLED_NODE_NAME", "NODE_NAME")
    assert SETTINGS["lease_namespace"].env == ("LIFECYCLED_LEASE_NAMESPACE", "POD_NAMESPACE")
    assert SETTINGS["identity"].env == ("LIFECYCLED_IDENTITY", "POD_NAME")
    assert SETTINGS["rebalance_recommendation_action"].env == (
        "LIFECYCLED_REBALANCE_RECOMMENDATION_ACTION",
        "LIFECYCLED_REBALANCE_ACTION",
    )
    assert "LIFECYCLED_DRAIN_POLL_SECONDS" in ENVIRONMENT


def test_flat_names_reach_their_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIFECYCLED_DRAIN_POLL_SECONDS", "3")
    monkeypatch.setenv("LIFECYCLED_LB_TARGET_GROUP_TAGS", "team=web,managed")
    monkeypatch.setenv("lifecycled_ecs_clusters", "a, b")  # names are case-insensitive
    monkeypatch.setenv("NODE_NAME", "n1")
    settings = Settings(**Q, api_timeout_seconds=4)
    assert settings.drain.poll_seconds == 3.0
    assert settings.lb.target_group_tags == {"team": "web", "managed": None}
    assert settings.lb.target_groups_configured
    assert settings.ecs.clusters == frozenset({"a", "b"})
    assert settings.imds.node_name == "n1"
    assert settings.calls.timeout_seconds == 4.0
    assert settings.queue.url == "http://q"
    # Keyword arguments win over the environment, and may name a whole group.
    assert Settings(**Q, drain_poll_seconds=0.2).drain.poll_seconds == 0.2
    assert Settings(**Q, drain=Drain(poll_seconds=0.5)).drain.poll_seconds == 0.5
    monkeypatch.setenv("LIFECYCLED_NODE_NAME", "n2")
    assert Settings(**Q).imds.node_name == "n2"  # LIFECYCLED_NODE_NAME wins over NODE_NAME


def test_errors_name_the_setting() -> None:
    with pytest.raises(ConfigError, match="sqs_max_messages"):
        load_settings(**Q, sqs_max_messages=11)
    with pytest.raises(ConfigError, match="lb_poll_seconds"):
        load_settings(**Q, lb_poll_seconds=0)
    with pytest.raises(ConfigError, match="no_such_setting"):
        load_settings(**Q, no_such_setting=1)


def test_every_setting_has_its_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    async def serve(settings: Any) -> None:
        seen["settings"] = settings

    monkeypatch.setattr(cli, "_serve", serve)
    monkeypatch.setattr(cli, "setup_logging", lambda *_: None)
    argv = ["run", "--queue-url", "http://q", "--drain-poll-seconds", "0.7"]
    assert cli.main([*argv, "--lb-classic-names", "x,y", "--lifecycle-max-hold-seconds", "9"]) == 0
    settings = seen["settings"]
    assert settings.drain.poll_seconds == 0.7
    assert settings.lb.classic_names == frozenset({"x", "y"})
    assert settings.hooks.max_hold_seconds == 9.0
