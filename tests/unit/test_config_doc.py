"""docs/configuration.md's settings table is generated from the settings (tools/config_doc.py):
the test fails when it drifts, as CI's `make test` runs it."""

from __future__ import annotations

from pathlib import Path

from lifecycled.settings import SETTINGS
from tests.unit.tools import load_tool


def _tool():  # type: ignore[no-untyped-def]
    return load_tool("config_doc")


def test_the_committed_table_is_current() -> None:
    assert _tool().main([]) == 0, "run: python tools/config_doc.py --write"


def test_every_setting_is_a_row_with_its_description() -> None:
    tool = _tool()
    text = tool.table()
    for setting in SETTINGS.values():
        row = next(line for line in text.splitlines() if f"`{setting.env[0]}`" in line)
        assert setting.help.replace("|", "\\|") in row
        assert f"`{setting.flag}`" in row


def test_a_drifted_table_is_found(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    tool = _tool()
    doc = tmp_path / "configuration.md"
    doc.write_text(tool.DOC.read_text().replace("long-poll wait of each receive", "old words"))
    monkeypatch.setattr(tool, "DOC", doc)
    monkeypatch.setattr(tool, "ROOT", tmp_path)
    assert tool.main([]) == 1
    assert tool.main(["--write"]) == 0
    assert tool.main([]) == 0
