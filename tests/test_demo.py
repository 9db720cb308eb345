"""The README's first command: ``python -m pipeline demo`` publishes version 1, does nothing on
the second run, and publishes version 2 after the sandbox adds records; in GitHub Actions every
command leaves step outputs and a job summary."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import feedparser
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(300)
def test_demo_runs_the_continuous_loop_end_to_end(tmp_path: Path) -> None:
    outputs, summary = tmp_path / "github_output", tmp_path / "summary.md"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
           "TMPDIR": str(tmp_path), "GITHUB_OUTPUT": str(outputs),
           "GITHUB_STEP_SUMMARY": str(summary)}
    done = subprocess.run([sys.executable, "-m", "pipeline", "--workdir", str(tmp_path / "demo"),
                           "demo"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=280)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    second = out.split("=== demo: second run (nothing new) ===")[1].split("=== demo: third")[0]
    assert "0 records planned" in second and "no new version" in second
    assert "nothing to announce" in second
    versions = re.findall(r"^version (\d+\.\d{8}): (\d+) records, \+(\d+) added; Zenodo DOI "
                          r"(10\.5072/zenodo\.\d+); Kaggle (\S+) v(\d)", out, re.M)
    assert [(v[0].split(".")[0], v[5]) for v in versions] == [("1", "1"), ("2", "2")]
    assert int(versions[1][1]) == int(versions[0][1]) + 4 and versions[1][2] == "4"
    assert versions[0][3] != versions[1][3]  # a new DOI per version
    assert "notifications received by the sandbox: 2 dispatch, 2 slack, 2 webhook" in out
    feed = feedparser.parse(str(tmp_path / "demo" / "feed" / "dataset.atom"))
    assert not feed.bozo and len(feed.entries) == 2
    lines = outputs.read_text().splitlines()
    assert f"version={versions[1][0]}" in lines and f"doi={versions[1][3]}" in lines
    assert "new_records=4" in lines and any(x.startswith("kaggle_url=http") for x in lines)
    text = summary.read_text()
    for command in ("detect", "process", "version", "publish", "notify"):
        assert f"{command}" in text
