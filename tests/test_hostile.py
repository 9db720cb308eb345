"""The real CLI against a hostile Zenodo (tests/hostile.py): every kind of bad answer or bad
record fails only its record, in one line naming the stage, the record and what to do; nothing
is read or written outside the work folder; nothing hangs; memory stays small."""

from __future__ import annotations

import gzip
import json
import os
import queue
import re
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline.state import State
from tests import hostile as H

TOKEN = "hostile-test-token-1234"
ALLOWED = ("work", "state", "data_manifest.yaml")
MAX_RSS_MB = 600


def assert_clean(run: H.Run) -> None:
    assert "Traceback" not in run.text, run.text
    assert "This is a bug" not in run.text, run.text
    assert run.max_rss_mb < MAX_RSS_MB, run.max_rss_mb


def failures(folder: Path) -> dict[str, str]:
    state = State.load(folder / "state" / "state.json")
    return {rid: r["reason"] for rid, r in state.records.items() if r["status"] == "failed"}


def test_records_whose_fields_are_attacks_are_refused_where_they_enter(
        hostile_server: H.Hostile, tmp_path: Path) -> None:
    """Ids, checksums, keys and links from the service never become paths or URLs unchecked."""
    outside = tmp_path / "outside"
    good = H.zip_bytes({"p/ok.py": b"print('ok')\n"})
    hostile = [
        H.record(hostile_server, 101, {"ok.zip": good}, id="../../outside/idtrav"),
        H.record(hostile_server, 102, {"ok.zip": good}),
        H.record(hostile_server, 103, {"../../outside/evil.zip": good}),
        H.record(hostile_server, 104, {"a\\..\\..\\b.zip": good}),
        {"status": 404, "message": "PID does not exist."},  # an error document as a hit
        "garbage",
        H.record(hostile_server, 107, {"ok.zip": good}, revision="abc"),
        H.record(hostile_server, 108, {"ok.zip": good}, metadata="not an object"),
        H.record(hostile_server, 109, {"ok.zip": good}, updated="yesterday"),
        H.record(hostile_server, 110, {"ok.zip": good}),
        H.record(hostile_server, 111, {"ok.zip": good}),
    ]
    hostile[1]["files"][0]["checksum"] = "md5:../../../outside/secret.zip"
    hostile[9]["files"][0]["links"]["self"] = "file:///etc/passwd"
    hostile_server.serve_records(hostile)
    H.manifest(hostile_server.url, tmp_path)
    run = H.cli(tmp_path, "detect")
    assert_clean(run)
    assert run.code == 0, run.text
    plan = json.loads((tmp_path / "work" / "plan.json").read_text())
    assert [r["id"] for r in plan["records"]] == ["111"]  # the only honest one
    refused = [line for line in run.err.splitlines() if "[detect]" in line]
    assert len(refused) == 10, run.err
    for line, rid in zip(refused, ["idtrav", "102", "103", "104", "", "", "107", "108", "109",
                                   "110"], strict=True):
        assert rid in line and "expected" in line, line
    assert not outside.exists()
    run = H.cli(tmp_path, "process")
    assert_clean(run)
    assert run.code == 0, run.text
    assert H.files_outside(tmp_path, ALLOWED) == []


def unique(rid: int) -> bytes:
    """An honest zip of its own (the download cache is shared by checksum)."""
    return H.zip_bytes({"p/ok.py": f"print({rid})\n".encode()})


def test_bad_answers_to_downloads_fail_only_their_record(hostile_server: H.Hostile,
                                                         tmp_path: Path) -> None:
    other = H.Hostile().start()  # another origin: must never see the token
    try:
        long_name = b"x" * (300 * 1024**2)  # declared only; refused before it is read
        gnu_long = gzip.compress(H.tar_header(b"././@LongLink", len(long_name), b"L")
                                 + long_name[:4096])
        pax = gzip.compress(H.tar_header(b"pax", 10 * 1024**2, b"x") + b"1" * 4096)
        non_utf8 = H.tar_member(b"proj/caf\xe9.py", b"print(1)\n") + H.tar_end()
        backslash = H.tar_member(b"..\\..\\outside\\x.py", b"print(1)\n") + H.tar_end()
        empty = H.tar_end() * 5
        long_zip_name = H.zip_bytes({"p/" + "d" * 5000 + ".py": b"1\n"})
        def zipped(rid: int, route: Callable[[bytes], H.Route] | None = None) -> dict:
            data = unique(rid)
            routes = {"ok.zip": route(data)} if route else None
            return H.record(hostile_server, rid, {"ok.zip": data}, routes=routes)

        records = [
            zipped(201),
            zipped(202, lambda g: H.bytes_route(g, {"Content-Length": "abc"})),
            zipped(203, H.trickle_route),
            zipped(204, lambda g: hostile_server.hang),
            zipped(205, lambda g: H.bytes_route(b"<html>maintenance</html>")),
            zipped(206, lambda g: H.bytes_route(g, close_after=40)),
            H.record(hostile_server, 207, {"long.tar.gz": gnu_long}),
            H.record(hostile_server, 208, {"pax.tar.gz": pax}),
            H.record(hostile_server, 209, {"latin1.tar": non_utf8}),
            H.record(hostile_server, 210, {"bs.tar": backslash}),
            H.record(hostile_server, 211, {"empty.tar": empty}),
            H.record(hostile_server, 212, {"long.zip": long_zip_name}),
            zipped(213, lambda g: H.bytes_route(b"", {"Content-Length": str(10**12)})),
            zipped(214, lambda g: H.bytes_route(b'{"status": 500}', status=500)),
            zipped(215),
            zipped(216, lambda g: H.bytes_route(b"", {"Location": "/files/216/ok.zip/content"},
                                                status=302)),
            zipped(217, lambda g: H.bytes_route(g, {f"X-Flood-{i}": "x" for i in range(200)})),
            zipped(218, lambda g: H.bytes_route(b"\x1f\x8bnot gzip at all" * 9,
                                                {"Content-Encoding": "gzip"})),
            zipped(219, lambda g: H.bytes_route(g, {"Location": "file:///etc/passwd"},
                                                status=301)),
            zipped(220, lambda g: H.bytes_route(b"", {"Location": other.file(
                220, "ok.zip", H.bytes_route(g))}, status=302)),  # to another host
        ]
        by_id = {r["id"]: r for r in records}
        by_id[215]["files"][0]["links"]["self"] = other.file(215, "ok.zip",
                                                              H.bytes_route(unique(215)))
        hostile_server.serve_records(records)
        H.manifest(hostile_server.url, tmp_path, **{"processing.max_download_bytes": 10**9,
                                                    "source.zenodo.timeout_seconds": 2})
        env = {"ZENODO_TOKEN": TOKEN}
        assert H.cli(tmp_path, "detect", env=env).code == 0
        started = time.monotonic()
        run = H.cli(tmp_path, "process", "--jobs", "2", env=env)
        assert time.monotonic() - started < 60
        assert_clean(run)
        assert run.code == 1, run.text  # some records failed; the run itself went through
        assert "process: shard 1/1: 20 planned" in run.out  # the summary is printed
        assert H.cli(tmp_path, "status", env=env).code == 0  # folds the outcomes in
        failed = failures(tmp_path)
        expected = {
            "203": r"\[fetch\] record 203: the download of ok.zip is too slow",
            "204": r"\[fetch\] record 204: Zenodo did not answer within the read timeout",
            "205": r"\[fetch\] record 205: size of ok.zip differs",
            "206": r"\[fetch\] record 206: the download of ok.zip broke off after 40 bytes \(the "
                   r"connection closed before the end\)",
            "207": r"\[extract\] record 207: tar.gz archive long.tar.gz: GNU long name/link "
                   r"header of 314572800 bytes",
            "208": r"\[extract\] record 208: tar.gz archive pax.tar.gz: pax header of 10485760",
            "210": r"\[extract\] record 210: member .*'\.\.' component \(path traversal\)",
            "212": r"\[extract\] record 212: zip entry 1 has a name of 5005 bytes",
            "213": r"\[fetch\] record 213: archive ok.zip is larger than processing.max_download",
            "214": r"\[fetch\] record 214: .*HTTP 500.*the service had an error",
            "216": r"\[fetch\] record 216: Zenodo GET could not be sent: TooManyRedirects",
            "217": r"\[fetch\] record 217: Zenodo sent an answer that is not valid HTTP: more "
                   r"headers than allowed",
            "218": r"\[fetch\] record 218: the download of ok.zip broke off after 0 bytes \(a "
                   r"body its Content-Encoding does not decode\)",
            "219": r"\[fetch\] record 219: Zenodo GET could not be sent: InvalidSchema",
        }
        assert set(failed) == set(expected), failed
        for rid, pattern in expected.items():
            reason = failed[rid]
            assert re.search(pattern, reason), reason
            assert "\n" not in reason and ". " in reason  # one line, with what to do
            assert sum(f"record {rid}:" in line for line in run.out.splitlines()) == 1, run.out
        state = State.load(tmp_path / "state" / "state.json")
        done = {rid for rid, r in state.records.items() if r["status"] == "done"}
        assert done == {"201", "202", "209", "211", "215", "220"}
        meta = json.loads((tmp_path / "work" / "records" / "209.json").read_text())
        assert any("caf\ufffd.py" in json.dumps(meta, ensure_ascii=False) for _ in [0])
        # The token went to Zenodo's own origin only.
        assert any(h.get("Authorization") == f"Bearer {TOKEN}" for _, h in hostile_server.seen)
        assert other.seen and not any("Authorization" in h for _, h in other.seen)
        assert H.files_outside(tmp_path, ALLOWED) == []
    finally:
        other.stop()


def test_detect_reports_foreign_answers_in_one_line(hostile_server: H.Hostile,
                                                    tmp_path: Path) -> None:
    good = H.record(hostile_server, 301, {"ok.zip": H.zip_bytes({"a.py": b"1\n"})})
    hostile_server.routes["/api/records/301"] = lambda h: H.send_raw(
        h, 200, {"Content-Type": "application/json", "Content-Length": "9"}, b"<html>oops")
    hostile_server.routes["/api/records/302"] = lambda h: H.send_json(
        h, {"status": 404, "message": "PID does not exist."})
    hostile_server.routes["/api/records/303"] = lambda h: H.send_json(h, good)  # another record
    hostile_server.routes["/api/records"] = lambda h: H.send_raw(
        h, 200, {"Content-Length": "3"}, b"\xff\xfe\x00")
    H.manifest(hostile_server.url, tmp_path, **{"source.zenodo.timeout_seconds": 1})
    cases = {
        ("--record", "301"): r"\[detect\] record 301: Zenodo answered HTTP 200 with a body that "
                             r"is not JSON; expected a Zenodo record object",
        ("--record", "302"): r"\[detect\] record 302: Zenodo sent an error document instead "
                             r"of a record: "
                             r"404 'PID does not exist.'",
        ("--record", "303"): r"\[detect\] record 303: Zenodo answered with another record",
        (): r"\[detect\] Zenodo answered HTTP 200 with a body that is not JSON",
    }
    for args, pattern in cases.items():
        run = H.cli(tmp_path, "detect", *args)
        assert_clean(run)
        assert run.code == 1, run.text
        lines = [line for line in run.err.splitlines() if line.strip()]
        assert len(lines) == 1 and re.search(pattern, lines[0]), run.err
    body = json.dumps({"hits": {"hits": [], "total": 0}}).encode()
    # A byte every half second never trips the read timeout; the answer's deadline ends it.
    hostile_server.routes["/api/records"] = H.trickle_route(body, every=0.5)
    run = H.cli(tmp_path, "detect")
    assert_clean(run)
    assert run.code == 1 and run.seconds < 20
    assert re.search(r"^error: \[detect\] Zenodo answer is too slow: \d+ bytes arrived before "
                     r"the deadline", run.err), run.err
    run = H.cli(tmp_path, "detect", "--record", "../../x")
    assert run.code == 2 and "digits" in run.err and "Traceback" not in run.text


def test_an_unreachable_zenodo_is_one_line_in_bounded_time(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: connections are refused
    H.manifest(f"http://127.0.0.1:{port}", tmp_path, **{"source.zenodo.max_retries": 5})
    run = H.cli(tmp_path, "detect")
    assert_clean(run)
    assert run.code == 1
    lines = [line for line in run.err.splitlines() if line.strip()]
    assert len(lines) == 1, run.err
    assert re.search(r"\[detect\] Zenodo unreachable after \d attempts in \d+ s: connection "
                     r"refused \(http://127\.0\.0\.1:\d+/api/records\)\. check", lines[0])
    assert "urllib3" not in lines[0] and "HTTPConnection" not in lines[0]
    assert run.seconds < 20


def _pid_owning(local_port: int) -> int | None:
    """The process holding the TCP connection whose local port is ``local_port`` (Linux)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == local_port:
            inodes.add(f"socket:[{fields[9]}]")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in inodes for fd in (proc / "fd").iterdir()):
                return int(proc.name)
        except OSError:
            continue
    return None


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")
def test_a_worker_killed_by_the_kernel_fails_only_its_record(hostile_server: H.Hostile,
                                                            tmp_path: Path) -> None:
    """SIGKILL is what the out-of-memory killer sends: the record in that worker fails alone,
    the others finish, and the summary is printed (no BrokenProcessPool traceback)."""
    ports: queue.Queue[int] = queue.Queue()

    def doomed(h: Any) -> None:  # the download that "eats the memory": its worker is killed
        ports.put(h.client_address[1])
        hostile_server._stop.wait(30)

    records = [H.record(hostile_server, 401, {"ok.zip": unique(401)}, routes={"ok.zip": doomed})]
    records += [H.record(hostile_server, rid, {"ok.zip": unique(rid)}) for rid in range(402, 407)]
    hostile_server.serve_records(records)
    H.manifest(hostile_server.url, tmp_path)
    assert H.cli(tmp_path, "detect").code == 0
    result: list[H.Run] = []
    runner = threading.Thread(target=lambda: result.append(
        H.cli(tmp_path, "process", "--jobs", "2")))
    runner.start()
    kills = 0
    while runner.is_alive():
        try:
            port = ports.get(timeout=0.2)
        except queue.Empty:
            continue
        for _ in range(50):
            pid = _pid_owning(port)
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
                kills += 1
                break
            time.sleep(0.1)
    runner.join()
    run = result[0]
    assert kills == 2  # in the pool, then alone to tell which record it was
    assert_clean(run)
    assert "BrokenProcessPool" not in run.text
    assert run.code == 1 and "process: shard 1/1: 6 planned, 5 done, 1 failed" in run.out
    assert H.cli(tmp_path, "status").code == 0
    failed = failures(tmp_path)
    assert list(failed) == ["401"]
    assert re.match(r"\[process\] record 401: worker killed, probably out of memory; .*"
                    r"Run it alone with more memory", failed["401"])


def test_a_rerun_removes_a_killed_runs_temporaries_and_refuses_bad_plan_ids(
        hostile_server: H.Hostile, tmp_path: Path) -> None:
    hostile_server.serve_records([H.record(hostile_server, 501, {"ok.zip": unique(501)})])
    H.manifest(hostile_server.url, tmp_path)
    assert H.cli(tmp_path, "detect").code == 0
    work = tmp_path / "work"
    plan = json.loads((work / "plan.json").read_text())
    hand_edited = json.loads(json.dumps(plan["records"][0]))
    hand_edited["id"] = "../../outside/p"
    plan["records"].append(hand_edited)
    (work / "plan.json").write_text(json.dumps(plan))
    (work / "records").mkdir()
    (work / "outcomes").mkdir()
    left = [work / "records" / ".501.h5.abc123.tmp", work / "records" / ".501.json.x1.tmp",
            work / "records" / ".501.h5.q.widen.tmp", work / "outcomes" / ".501.json.z.tmp"]
    other = work / "records" / ".777.h5.def456.tmp"  # another shard may be writing it now
    for path in [*left, other]:
        path.write_bytes(b"half-written")
    run = H.cli(tmp_path, "process")
    assert_clean(run)
    assert run.code == 1
    assert not any(p.exists() for p in left) and other.exists()
    assert (work / "records" / "501.h5").is_file()
    line = next(x for x in run.out.splitlines() if "outside" in x)
    assert "[process] record '../../outside/p': the plan holds an id that cannot name a file" \
        in line and "Run `detect` again" in line
    assert not (tmp_path / "outside").exists()
    assert H.files_outside(tmp_path, ALLOWED) == []


def test_a_local_disk_error_is_not_the_records_fault(hostile_server: H.Hostile,
                                                     tmp_path: Path) -> None:
    """The download cannot be written (its .part name is taken by a folder): one line that says
    it is this machine's problem, and the record's attempts are not counted."""
    data = unique(601)
    hostile_server.serve_records([H.record(hostile_server, 601, {"ok.zip": data}),
                                  H.record(hostile_server, 602, {"ok.zip": unique(602)})])
    H.manifest(hostile_server.url, tmp_path)
    assert H.cli(tmp_path, "detect").code == 0
    blocker = tmp_path / "work" / "downloads" / "md5" / (H.md5(data)[4:] + ".part")
    blocker.mkdir(parents=True)
    run = H.cli(tmp_path, "process")
    assert_clean(run)
    assert run.code == 1
    outcome = json.loads((tmp_path / "work" / "outcomes" / "601.json").read_text())
    assert outcome["status"] == "failed" and outcome["attempts"] == 0
    assert re.match(r"\[fetch\] record 601: cannot keep the download of ok.zip in .*: Is a "
                    r"directory\. a problem of this machine's disk or work folder, not of the "
                    r"record", outcome["reason"])
    assert json.loads((tmp_path / "work" / "outcomes" / "602.json").read_text())["status"] == \
        "done"
