"""What the operator sees: each result once and in words, the next step, ``--json`` and ``-q``
everywhere, global options after the command, one line for bad usage, a busy port and a closed
pipe, and a ``status`` that tells the truth (issue 11)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import sandbox as sb
from pipeline.cli import build_parser, main
from pipeline.demo import sandbox_environ, sandbox_manifest
from pipeline.state import State
from pipeline.status import status_info, status_text

ROOT = Path(__file__).resolve().parent.parent


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_cycle_prints_each_result_once_in_words_with_the_next_step(
        sandbox: sb.Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    for key, value in sandbox_environ(sandbox.url).items():
        monkeypatch.setenv(key, value)
    m = str(sandbox_manifest(sandbox.url, tmp_path))

    code, out, _ = run(capsys, "--manifest", m, "detect", "--max-records", "3")
    assert code == 0 and out.startswith("detect: 3 records planned (3 new")
    assert out.rstrip().endswith(f"next: pipeline --manifest {m} process")
    code, out, err = run(capsys, "process", "--manifest", m, "-q")  # global options after
    assert code == 0 and out.startswith("process: shard 1/1: 3 planned, 3 done")
    assert "next:" not in out and err == ""  # -q: the result, nothing else
    code, out, _ = run(capsys, "--manifest", m, "version")
    assert code == 0 and "{" not in out
    assert "version: built 1." in out and ": 3 records (3 added, 0 updated, 0 removed)" in out

    code, out, err = run(capsys, "--manifest", m, "publish")
    assert code == 0
    both = out + err
    assert both.count("zenodo: published") == 1 and both.count("kaggle: published") == 1
    assert "(Kaggle version 1)" in out and out.rstrip().endswith("notify")
    code, out, err = run(capsys, "--manifest", m, "notify")
    assert code == 0
    assert (out + err).count("webhook:DEMO_WEBHOOK_URL: sent") == 1

    for command in ("detect", "process", "version", "publish", "notify", "status",
                    "validate"):
        code, out, _ = run(capsys, command, "--manifest", m, "--json")
        assert code == 0, command
        data = json.loads(out)
        assert isinstance(data, dict), command
    assert json.loads(run(capsys, "--manifest", m, "--json", "publish")[1])["results"][0][
        "outcome"] == "up-to-date"


def test_every_command_has_a_description_and_every_option_help() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, command in sub.choices.items():
        assert command.description, name
        for action in command._actions:
            assert action.help, f"{name} {action.option_strings}"


@pytest.mark.parametrize("args", [
    ["detect", "--since", "yesterday"], ["detect", "--until", "2026-13-01"],
    ["process", "--jobs", "0"], ["process", "--shard", "4/3"], ["run", "--max-records", "x"],
    ["sandbox", "--port", "70000"], ["publish", "--target", "figshare"], ["frobnicate"],
])
def test_bad_arguments_exit_2_with_one_line(args: list[str],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, *args)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "error:" in err and "--help" in err


def test_a_busy_port_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        code, out, err = run(capsys, "sandbox", "--port", str(port))
    assert code == 1 and out == ""
    assert err.strip() == (f"error: [sandbox] port {port} on 127.0.0.1 is already in use. "
                           "stop what holds it, or choose another --port (--port 0 picks a "
                           "free one)")


def a_state(path: Path, failed: int = 2) -> State:
    state = State(path=path)
    state.cursor = "2026-11-20T06:00:00Z"
    for i in range(failed):
        state.records[str(100 + i)] = {"status": "failed", "attempts": 2,
                                       "reason": f"[fetch] record {100 + i}: checksum differs"}
    state.records["7"] = {"status": "done"}
    state.pending["8"] = {"action": "new", "reason": "new record", "attempts": 0}
    state.versions.append({"version": "1.20261120", "created": "2026-11-20T06:10:00Z",
                           "counts": {"records": 1},
                           "published": {"zenodo": {"doi": "10.5072/zenodo.1"},
                                         "kaggle": {"version_number": 1}}})
    state.versions.append({"version": "2.20261121", "created": "2026-11-21T06:10:00Z",
                           "counts": {"records": 2}, "published": {"kaggle": {}}})
    state.notifications["1.20261120"] = {
        "feed": {"status": "sent", "attempts": 1},
        "slack": {"status": "failed", "attempts": 3, "error": "[notify] Slack refused: 404"}}
    state.journal["zenodo"] = {"version": "2.20261121", "steps": ["draft", "uploaded"],
                               "deposition_id": 5}
    return state


def test_status_tells_the_truth_in_words_and_json(tmp_path: Path) -> None:
    info = status_info(a_state(tmp_path / "state.json"))
    text = status_text(info, state_path="state.json", command="pipeline")
    assert "records: 1 done, 2 failed, 0 skipped, 1 pending" in text
    assert "8       new     new record" in text  # pending, with its reason
    assert "101     2         [fetch] record 101: checksum differs" in text
    assert "1.20261120  2026-11-20T06:10:00Z  1        kaggle, zenodo  1 sent, 1 FAILED" in text
    assert "failed notifications (`pipeline notify` retries them):" in text
    assert "1.20261120  slack    3         [notify] Slack refused: 404" in text
    assert ("publishing in progress: version 2.20261121 to zenodo; steps done: draft, uploaded. "
            "`pipeline publish` finishes this same version") in text
    assert "{" not in text
    assert info["pending_records"] == [{"id": "8", "action": "new", "reason": "new record",
                                        "attempts": 0, "planned_at": ""}]
    assert info["failed_notifications"] == [{"version": "1.20261120", "channel": "slack",
                                             "attempts": 3,
                                             "error": "[notify] Slack refused: 404"}]
    assert info["publishing"] == [{"destination": "zenodo", "version": "2.20261121",
                                   "steps": ["draft", "uploaded"], "last_step": "uploaded"}]
    assert info["versions"][0]["notifications_failed"] == 1


def test_a_closed_pipe_is_one_line(tmp_path: Path) -> None:
    """``status --json | head``: the reader leaves before the output is written."""
    manifest = sandbox_manifest("http://127.0.0.1:9", tmp_path)
    a_state(tmp_path / "state" / "state.json", failed=3000).save()  # > a pipe's 64 KiB
    done = subprocess.run(
        ["bash", "-c", f'"{sys.executable}" -m pipeline --manifest "{manifest}" status --json '
                       "| head -c 10 >/dev/null; echo \"${PIPESTATUS[0]}\" >&2"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    lines = done.stderr.strip().splitlines()
    assert lines == ["pipeline: output closed early (broken pipe); the command's work is "
                     "unaffected", "141"], done.stderr


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_process_shows_a_progress_bar_on_a_terminal_at_any_jobs(
        sandbox: sb.Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jobs: str) -> None:
    """On a terminal (``script`` gives the command one) a bar, not one log line per record;
    with ``-q`` neither."""
    monkeypatch.setenv("ZENODO_TOKEN", sb.ZENODO_TOKEN)
    m = str(sandbox_manifest(sandbox.url, tmp_path))
    assert main(["--manifest", m, "detect", "--max-records", "4"]) == 0
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def on_a_terminal(*args: str) -> str:
        # a pty has no size until told: tqdm draws nothing on a 0-column terminal
        command = "stty cols 100 rows 40; " + " ".join(
            [sys.executable, "-m", "pipeline", "--manifest", m, *args])
        done = subprocess.run(["script", "-qec", command, "/dev/null"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout
        return done.stdout

    quiet = on_a_terminal("process", "--jobs", jobs, "-q")
    assert "process:   0%" not in quiet and "4/4" not in quiet and "record " not in quiet
    (tmp_path / "work" / "outcomes").rename(tmp_path / "quiet-outcomes")
    for h5 in (tmp_path / "work" / "records").glob("*"):
        h5.unlink()
    shown = on_a_terminal("process", "--jobs", jobs)
    assert "process: 100%|" in shown and "4/4" in shown and "record/s" in shown
    assert "process: record" not in shown  # the bar replaces the per-record lines
