"""Pure pieces of the operator controls: per-kind actions, their settings, ownership tags."""

from __future__ import annotations

from typing import Any

import pytest

from lifecycled import cli
from lifecycled.errors import ConfigError
from lifecycled.events import default_action, parse_message
from lifecycled.explain import actions_from_env, explain
from lifecycled.jobs import IDEMPOTENT_ANNOTATION, JOB_ANNOTATION
from lifecycled.model import Action, Disposition, Notice, NoticeKind
from lifecycled.observe import Metrics
from lifecycled.ownership import has_owner_tag, tag_rule
from lifecycled.plan import action_table
from lifecycled.platforms.kube_jobs import JobRequeuer
from lifecycled.platforms.kube_preview import preview_pods
from lifecycled.settings import load_settings
from lifecycled.sources.sqs import _concerns_others
from tests.events.conftest import fixture_bytes

Q = {"queue_url": "http://q"}


def notice(name: str) -> Notice:
    result = parse_message(fixture_bytes(name))
    assert isinstance(result, Notice), result
    return result


@pytest.mark.parametrize(
    ("fixture", "kind"),
    [
        ("spot_interruption.json", NoticeKind.SPOT_INTERRUPTION),
        ("rebalance_recommendation.json", NoticeKind.REBALANCE_RECOMMENDATION),
        ("health_scheduled_change.json", NoticeKind.SCHEDULED_CHANGE),
        ("state_change_stopping.json", NoticeKind.INSTANCE_STATE_CHANGE),
        ("lifecycle_terminate_eventbridge.json", NoticeKind.LIFECYCLE_TERMINATE),
    ],
)
@pytest.mark.parametrize("action", [Action.DRAIN, Action.CORDON, Action.NONE])
def test_each_kind_takes_its_configured_action(
    fixture: str, kind: NoticeKind, action: Action
) -> None:
    n = notice(fixture)
    assert n.kind is kind
    settings = load_settings(**Q, **{f"{kind.value}_action": action.value})
    assert default_action(n, actions=action_table(settings)) is action
    # Other kinds keep their defaults.
    assert action_table(settings)[kind] is action
    others = {k: a for k, a in action_table(settings).items() if k is not kind}
    assert others == {k: a for k, a in action_table(load_settings(**Q)).items() if k is not kind}


def test_defaults_are_the_documented_table() -> None:
    table = action_table(load_settings(**Q))
    assert table == {
        NoticeKind.SPOT_INTERRUPTION: Action.DRAIN,
        NoticeKind.REBALANCE_RECOMMENDATION: Action.CORDON,
        NoticeKind.SCHEDULED_CHANGE: Action.DRAIN,
        NoticeKind.INSTANCE_STATE_CHANGE: Action.DRAIN,
        NoticeKind.LIFECYCLE_TERMINATE: Action.DRAIN,
    }


def test_a_gone_state_is_recorded_whatever_the_state_change_action() -> None:
    stopping = notice("state_change_stopping.json")
    gone = Notice(
        kind=stopping.kind,
        instance_ids=stopping.instance_ids,
        event_id="x",
        event_time=stopping.event_time,
        deadline=None,
        state="terminated",
    )
    for action in (Action.DRAIN, Action.NONE):
        actions = {NoticeKind.INSTANCE_STATE_CHANGE: action}
        assert default_action(gone, actions=actions) is Action.RECORD


def test_rebalance_action_is_still_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (
        load_settings(**Q, rebalance_action="drain").drain.rebalance_recommendation_action
        == "drain"
    )
    monkeypatch.setenv("LIFECYCLED_REBALANCE_ACTION", "none")
    assert load_settings(**Q).drain.rebalance_recommendation_action == "none"
    assert load_settings(**Q).drain.rebalance_action == "none"
    # The new name wins over the old one.
    monkeypatch.setenv("LIFECYCLED_REBALANCE_RECOMMENDATION_ACTION", "drain")
    assert load_settings(**Q).drain.rebalance_recommendation_action == "drain"


def test_explain_follows_the_action_settings() -> None:
    env = {"LIFECYCLED_REBALANCE_RECOMMENDATION_ACTION": "none", "LIFECYCLED_SPOT_ACTION": "x"}
    actions = actions_from_env(env)
    assert actions == {NoticeKind.REBALANCE_RECOMMENDATION: Action.NONE}
    _, obj = explain(fixture_bytes("rebalance_recommendation.json"), actions=actions)
    assert obj["action"] == "none"
    assert actions_from_env({"LIFECYCLED_REBALANCE_ACTION": "drain"}) == {
        NoticeKind.REBALANCE_RECOMMENDATION: Action.DRAIN
    }


def test_owner_tag_rules() -> None:
    eks = tag_rule(load_settings(**Q, cluster_name="alpha"))
    assert has_owner_tag({"kubernetes.io/cluster/alpha": "owned"}, eks)
    assert has_owner_tag({"kubernetes.io/cluster/alpha": "shared"}, eks)
    assert has_owner_tag({"aws:eks:cluster-name": "alpha"}, eks)
    assert not has_owner_tag({"aws:eks:cluster-name": "beta"}, eks)
    assert not has_owner_tag({"kubernetes.io/cluster/beta": "owned"}, eks)
    assert not has_owner_tag({}, eks)
    explicit = tag_rule(load_settings(**Q, cluster_name="alpha", owner_tag="team=batch"))
    assert explicit == (("team", "batch"),)  # owner_tag wins over the EKS defaults
    assert not has_owner_tag({"team": "web", "kubernetes.io/cluster/alpha": "owned"}, explicit)
    assert has_owner_tag({"managed": ""}, tag_rule(load_settings(**Q, owner_tag="managed")))
    assert tag_rule(load_settings(**Q)) == ()  # no tag check


def test_a_message_concerns_others_when_any_instance_is_not_ours() -> None:
    assert _concerns_others([Disposition.NOT_OURS])
    assert _concerns_others([Disposition.OPENED, Disposition.NOT_OURS])
    assert not _concerns_others([Disposition.OPENED, Disposition.DRY_RUN])
    assert not _concerns_others(None)


def test_an_owner_tag_needs_a_key() -> None:
    with pytest.raises(ConfigError):
        load_settings(**Q, owner_tag="=batch")


def pod(name: str, **annotations: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "batch", "uid": name, "annotations": annotations},
        "status": {"phase": "Running"},
    }


async def test_the_preview_says_what_vacate_would_do_to_each_pod() -> None:
    jobs = JobRequeuer(None, None, load_settings(**Q), Metrics(), None)  # type: ignore[arg-type]
    job = {JOB_ANNOTATION: "true", IDEMPOTENT_ANNOTATION: "false"}
    retriable = {JOB_ANNOTATION: "true", IDEMPOTENT_ANNOTATION: "true"}
    daemon = pod("agent")
    daemon["metadata"]["ownerReferences"] = [{"kind": "DaemonSet", "name": "agent"}]
    pods = [pod("web"), pod("report", **job), pod("etl", **retriable), daemon]

    far = await preview_pods(pods, jobs, remaining=3600, stop_lead=180)
    assert [(p["pod"], p["do"]) for p in far] == [
        ("batch/web", "evict"),
        ("batch/report", "wait"),
        ("batch/etl", "wait"),
        ("batch/agent", "skip"),
    ]
    near = await preview_pods(pods, jobs, remaining=60, stop_lead=180)
    assert [p["do"] for p in near] == ["evict", "requeue", "evict", "skip"]
    assert "DaemonSet" in near[3]["why"]


def test_the_older_flag_still_works(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    async def serve(settings: Any) -> None:
        seen["settings"] = settings

    monkeypatch.setattr(cli, "_serve", serve)
    monkeypatch.setattr(cli, "setup_logging", lambda *_: None)
    assert cli.main(["run", "--queue-url", "http://q", "--rebalance-action", "drain"]) == 0
    assert seen["settings"].drain.rebalance_recommendation_action == "drain"
