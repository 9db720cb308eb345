"""Ctrl-C and SIGTERM end a command with one line and exit 130 / 143 (SPEC §15), and a rerun
finishes the work with exactly one dataset version.

Real processes: the CLI runs as a subprocess against the embedded sandbox (served by this test
process), and the signal is sent by the operating system. Ctrl-C is sent as a terminal sends it,
to the whole process group, so ``process --jobs 2``'s workers get it too; SIGTERM goes to the
command alone, as GitHub Actions' cancel does. The sandbox slows the requests the command is in
the middle of, so the signal always lands mid-stage (never before or after it).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline import sandbox as sb
from pipeline.cli import main
from pipeline.demo import KAGGLE_DATASET, sandbox_environ, sandbox_manifest
from pipeline.sandbox.server import Request
from pipeline.state import State

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(180)


def slow(box: sb.Sandbox, predicate: Callable[[Request], bool], seconds: float) -> None:
    def hook(request: Request) -> None:
        if predicate(request):
            time.sleep(seconds)
    box.server.before.append(hook)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def interrupt(args: list[str], env: dict[str, str], ready: Callable[[], bool],
              signum: int) -> tuple[int, str]:
    """Start ``pipeline ARGS``, send ``signum`` once ``ready()``; return (exit code, stderr)."""
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        wait_for(lambda: ready() or proc.poll() is not None, "the command to get going")
        assert proc.poll() is None, "the command finished before it could be interrupted"
        if signum == signal.SIGINT:
            os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        else:
            proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, err


def check_one_line(err: str, stage: str, signame: str, resume: list[str]) -> None:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if "interrupted" in line]
    assert len(lines) == 1, err
    assert lines[0] == err.strip().splitlines()[-1]
    assert re.match(rf"pipeline {stage}: interrupted by [^;]*{signame}[^;]*; ", lines[0])
    assert "kept" in lines[0]
    assert lines[0].endswith("To resume, run: pipeline " + " ".join(resume)), lines[0]


@pytest.mark.parametrize(("signum", "code", "signame"), [(signal.SIGINT, 130, "SIGINT"),
                                                         (signal.SIGTERM, 143, "SIGTERM")])
def test_interrupted_process_and_publish_say_so_and_a_rerun_finishes_one_version(
        sandbox: sb.Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        signum: int, code: int, signame: str) -> None:
    manifest = sandbox_manifest(sandbox.url, tmp_path)
    credentials = sandbox_environ(sandbox.url)
    for key, value in credentials.items():
        monkeypatch.setenv(key, value)
    env = {**os.environ, **credentials, "PYTHONUNBUFFERED": "1"}
    base = ["--manifest", str(manifest)]
    assert main([*base, "detect"]) == 0
    outcomes = tmp_path / "work" / "outcomes"

    # process, two workers, interrupted after its first record is done
    slow(sandbox, lambda r: r.method == "GET" and "/files/" in r.path, 0.4)
    got, err = interrupt([*base, "process", "--jobs", "2"], env,
                         lambda: outcomes.is_dir() and any(outcomes.glob("*.json")), signum)
    assert got == code, err
    check_one_line(err, "process", signame, [*base, "process", "--jobs", "2"])
    kept = len(list(outcomes.glob("*.json")))
    sandbox.server.before.clear()
    assert main([*base, "process"]) == 0
    state = State.load(tmp_path / "state" / "state.json")
    planned = len(state.pending) + state.counts()["done"]
    assert 1 <= kept < planned
    assert main([*base, "version"]) == 0

    # publish, interrupted while it uploads the version's files to Zenodo
    slow(sandbox, lambda r: r.method == "PUT" and r.path.startswith("/api/files/"), 0.5)
    got, err = interrupt([*base, "publish"], env,
                         lambda: bool(sandbox.server.requests("PUT", "/api/files/")), signum)
    assert got == code, err
    check_one_line(err, "publish", signame, [*base, "publish"])
    assert State.load(tmp_path / "state" / "state.json").journal  # a publish in progress
    sandbox.server.before.clear()
    assert main([*base, "publish"]) == 0

    state = State.load(tmp_path / "state" / "state.json")
    assert len(state.versions) == 1 and state.journal == {}
    assert state.versions[0]["published"].keys() == {"zenodo", "kaggle"}
    published = [d for d in sandbox.deposit.depositions() if d["submitted"]]
    assert len(published) == 1 and not [d for d in sandbox.deposit.depositions()
                                        if not d["submitted"]]
    assert [v.number for v in sandbox.kaggle.datasets[KAGGLE_DATASET].versions] == [1]
