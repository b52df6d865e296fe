"""The command line: version, help from the settings' descriptions, switches, plain errors."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from lifecycled import __version__, cli
from lifecycled.observe import Metrics
from lifecycled.settings import SETTINGS

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("argv", [["--version"], ["-V"], ["version"]])
def test_version_is_the_package_version(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) if argv != ["version"] else _nothing():
        assert cli.main(argv) == 0
    assert capsys.readouterr().out.strip() == f"lifecycled {__version__}"
    assert __version__ == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *_: object) -> None:
        return None


def test_build_info_metric_names_the_version() -> None:
    metrics = Metrics()
    assert metrics.registry.get_sample_value("lifecycled_build_info", {"version": __version__}) == 1


def test_every_setting_has_help_with_default_and_env(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for setting in SETTINGS.values():
        assert setting.help, setting.name
        assert setting.flag in text
        assert f"env {setting.env[0]}" in text.replace(" or ", " ")
    assert "--rebalance-action" not in text  # an earlier name: accepted, not shown
    assert "--dry-run, --no-dry-run" in text


def test_switches_and_their_older_spelling(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, object]] = []
    monkeypatch.setattr(cli, "load_settings", lambda **kw: seen.append(kw) or _stop())
    for argv, expected in [
        (["--dry-run"], True),
        (["--no-dry-run"], False),
        (["--dry-run", "true"], True),
        (["--dry-run", "false"], False),
        (["--dry-run=no"], False),
        (["--dry-run=YES"], True),
    ]:
        cli.main(["run", *argv])
        assert seen.pop()["dry_run"] is expected, argv


def _stop() -> None:
    raise cli.ConfigError("stop here")


def test_a_bad_setting_is_one_plain_line_each(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(
        ["run", "--queue-url", "q", "--sqs-max-messages", "50", "--spot-interruption-action", "x"]
    )
    assert code == cli.EXIT_SETTINGS
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        "lifecycled: invalid setting: sqs_max_messages='50' (LIFECYCLED_SQS_MAX_MESSAGES, "
        "--sqs-max-messages): should be less than or equal to 10",
        "lifecycled: invalid setting: spot_interruption_action='x' "
        "(LIFECYCLED_SPOT_INTERRUPTION_ACTION, --spot-interruption-action): "
        "should be 'drain', 'cordon' or 'none'",
    ]


def test_a_bad_switch_value_in_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LIFECYCLED_DRY_RUN", "maybe")
    assert cli.main(["run", "--queue-url", "q"]) == cli.EXIT_SETTINGS
    err = capsys.readouterr().err
    assert "dry_run='maybe'" in err and "true or false" in err
    assert "pydantic" not in err and "http" not in err
