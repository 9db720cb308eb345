"""The README's "Driving the sandbox by hand", run exactly as written: version 1, records added,
version 2 (issue 11's must-show).

The two shell blocks of that section are taken from README.md and run with bash: the first
(``pipeline sandbox ...``) as the first terminal, the second as the second terminal. The only
change is the port: the README's 8765 becomes a free one, so parallel runs do not collide. If the
README's commands stop working, this test fails.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.state import State

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
pytestmark = pytest.mark.timeout(300)


def section_blocks(title: str) -> list[str]:
    body = README.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)```", body, re.S)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def command_path(tmp_path: Path) -> str:
    """A PATH with this interpreter's ``pipeline`` console command (installed by ``pip install
    -e .``), or a stand-in that runs ``python -m pipeline`` where the venv predates it."""
    scripts = Path(sys.executable).parent
    if not (scripts / "pipeline").is_file():
        scripts = tmp_path / "bin"
        scripts.mkdir()
        shim = scripts / "pipeline"
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m pipeline "$@"\n')
        shim.chmod(0o755)
    return f"{scripts}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"


def test_the_readme_walkthrough_builds_version_1_then_version_2(tmp_path: Path) -> None:
    first, second = section_blocks("Driving the sandbox by hand")
    port = free_port()
    assert "--port 8765" in first
    env = {"PATH": command_path(tmp_path), "HOME": str(tmp_path), "TMPDIR": str(tmp_path),
           "PYTHONPATH": str(ROOT), "NO_PROXY": "127.0.0.1,localhost"}
    server = subprocess.Popen(["bash", "-c", first.replace("--port 8765", f"--port {port}")],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "by-hand" / "env.sh").is_file():
            assert server.poll() is None, server.communicate()
            assert time.monotonic() < deadline, "the sandbox did not start"
            time.sleep(0.05)
        done = subprocess.run(["bash", "-e", "-c", second], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=240)
    finally:
        os.killpg(server.pid, signal.SIGINT)  # Ctrl-C in the first terminal
        out, err = server.communicate(timeout=30)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert server.returncode == 130 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == "pipeline sandbox: stopped by Ctrl-C (SIGINT)"
    assert f"sandbox: serving on http://127.0.0.1:{port}" in out

    state = State.load(tmp_path / "by-hand" / "state" / "state.json")
    assert [v["version"].split(".")[0] for v in state.versions] == ["1", "2"]
    assert state.versions[1]["counts"]["added"] == 4
    for entry in state.versions:
        assert entry["published"].keys() == {"zenodo", "kaggle"}
        sent = state.notifications[entry["version"]]
        assert {n["status"] for n in sent.values()} == {"sent"} and len(sent) == 4
    assert state.versions[1]["published"]["kaggle"]["version_number"] == 2
    text = done.stdout
    assert "detect: 14 records planned" in text and "detect: 4 records planned" in text
    assert "next: pipeline process" in text
    # the deliveries the README's last command lists: two signed, verified webhooks
    hooks = json.loads(text[text.rindex("\n[{") + 1:])
    webhooks = [d for d in hooks if d["kind"] == "webhook"]
    assert [d["verified"] for d in webhooks] == [True, True]
