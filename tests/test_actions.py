"""GitHub Actions step outputs and job summaries, read back the way the runner reads them."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.actions import (
    format_output,
    key_value_table,
    markdown_table,
    report_step,
    step_summary,
    write_outputs,
    write_summary,
)
from pipeline.errors import PipelineError
from pipeline.notify import ChannelResult, NotifyReport


def parse_github_output(text: str) -> dict[str, str]:
    """The runner's reading of a GITHUB_OUTPUT file (actions/runner, SetOutputFileCommand)."""
    outputs: dict[str, str] = {}
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line:
            continue
        eq, heredoc = line.find("="), line.find("<<")
        if eq >= 0 and (heredoc < 0 or eq < heredoc):
            outputs[line[:eq]] = line[eq + 1:]
            continue
        name, delimiter = line[:heredoc], line[heredoc + 2:]
        value: list[str] = []
        while lines[i] != delimiter:
            value.append(lines[i])
            i += 1
        i += 1
        outputs[name] = "\n".join(value)
    return outputs


def test_single_line_and_heredoc_outputs() -> None:
    assert format_output("version", "3.20261121") == "version=3.20261121\n"
    assert format_output("ok", True) == "ok=true\n"
    assert format_output("counts", {"b": 2, "a": 1}) == 'counts={"a":1,"b":2}\n'
    assert format_output("none", None) == "none=\n"
    assert format_output("notes", "a\nb", delimiter="EOF") == "notes<<EOF\na\nb\nEOF\n"
    random = format_output("notes", "a\nb")
    assert random.startswith("notes<<ghadelimiter_")
    with pytest.raises(ValueError, match="occurs in output"):
        format_output("notes", "x\nEOF\n", delimiter="EOF")
    for bad in ("a=b", "a\nb", "", " a"):
        with pytest.raises(ValueError, match="invalid step output name"):
            format_output(bad, "v")


def test_outputs_are_appended_and_read_back(tmp_path: Path) -> None:
    target = tmp_path / "github_output"
    target.write_text("earlier=step\n")
    env = {"GITHUB_OUTPUT": str(target)}
    changelog = "## 3.20261121\n\n- added 12 records\n- a=b and x<<y stay text"
    assert write_outputs({"version": "3.20261121", "notes": changelog, "count": 12},
                         environ=env) == target
    write_outputs({"later": "value"}, environ=env)
    assert parse_github_output(target.read_text()) == {
        "earlier": "step", "version": "3.20261121", "notes": changelog, "count": "12",
        "later": "value"}


def test_outside_actions_nothing_is_written(tmp_path: Path) -> None:
    assert write_outputs({"a": 1}, environ={}) is None
    assert write_summary("# hi", environ={}) is None
    report_step("detect", ok=True, outputs={"a": 1}, environ={})
    assert list(tmp_path.iterdir()) == []


def test_unwritable_target_is_a_clear_error(tmp_path: Path) -> None:
    env = {"GITHUB_OUTPUT": str(tmp_path / "missing-dir" / "out")}
    with pytest.raises(PipelineError, match=r"cannot append to \$GITHUB_OUTPUT"):
        write_outputs({"a": 1}, environ=env)


def test_markdown_tables_escape_cells() -> None:
    table = markdown_table([{"channel": "slack", "error": "a | b\nc"},
                            {"channel": "feed", "extra": True}])
    assert table.splitlines() == [
        "| channel | error | extra |",
        "|---|---|---|",
        "| slack | a \\| b<br>c |  |",
        "| feed |  | true |",
    ]
    assert markdown_table([]) == ""
    long = markdown_table([{"n": i} for i in range(5)], max_rows=2)
    assert "… and 3 more rows" in long and "| 2 |" not in long
    assert key_value_table({"version": "3", "doi": None}) == \
        "| name | value |\n|---|---|\n| version | 3 |\n"


def test_summary_and_outputs_of_a_command(tmp_path: Path) -> None:
    report = NotifyReport(results=[
        ChannelResult("3.20261121", "feed", "sent", 1),
        ChannelResult("3.20261121", "slack", "failed", 2, "[notify] Slack refused: 404"),
    ], feed_path="site/feed.atom")
    env = {"GITHUB_OUTPUT": str(tmp_path / "out"),
           "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md")}
    report_step("notify", ok=report.ok, outputs=report.outputs(),
                tables={"Notifications": report.rows()}, notes=report.lines()[:1],
                environ=env)

    outputs = parse_github_output((tmp_path / "out").read_text())
    assert outputs == {"notified_versions": "3.20261121", "sent": "1", "failed": "1",
                       "failed_channels": "3.20261121 slack", "feed_path": "site/feed.atom",
                       "ok": "false"}
    summary = (tmp_path / "summary.md").read_text()
    assert summary.startswith("### `pipeline notify`: ❌ failed\n")
    assert "| sent | 1 |" in summary
    assert "#### Notifications" in summary
    assert "| 3.20261121 | slack | failed | 2 | [notify] Slack refused: 404 |" in summary
    assert "- notify: 3.20261121 feed: sent (attempt 1)" in summary


def test_credentials_never_reach_outputs_or_summary(tmp_path: Path) -> None:
    env = {"GITHUB_OUTPUT": str(tmp_path / "out"),
           "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md")}
    leaky = "GET https://x/api?access_token=abcdef123 Authorization: Bearer ghp_secret1"
    report_step("detect", ok=False, outputs={"error": leaky}, environ=env)
    written = (tmp_path / "out").read_text() + (tmp_path / "summary.md").read_text()
    assert "abcdef123" not in written and "ghp_secret1" not in written
    assert "access_token=***" in written


def test_step_summary_without_outputs() -> None:
    assert step_summary("version", ok=True) == "### `pipeline version`: ✅ ok\n\n"
