"""A one-node SLURM cluster on this machine, for the SLURM test and benchmark.

Why a real cluster: the README's job-array recipe (environment, shared work folder, outcomes
folded once, a cancelled task, a resubmission, ``afterok``) only means something when SLURM itself
runs it. Debian's ``slurm-wlm`` and ``munge`` are started here as root, each in the foreground as
a child of this process, with a configuration in a private folder: everything on 127.0.0.1 and
free ports, no cgroup plugins (``proctrack/linuxproc``, ``task/none``: containers rarely delegate
cgroups), no accounting database. :meth:`Cluster.stop` cancels every job and stops the three
daemons by their process ids.

:func:`unavailable_reason` says why a cluster cannot run on a machine (not installed, not root);
``.ci/run`` installs the packages so CI is never such a machine.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUBMIT = ROOT / "slurm" / "submit"
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scancel", "scontrol", "sinfo")
# Every state in which a job will not run again (scontrol's JobState names).
FINISHED = {"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED",
            "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}


class ClusterUnavailable(RuntimeError):
    """SLURM cannot run here; the message says why and what would fix it."""


def unavailable_reason() -> str | None:
    """Why a one-node cluster cannot be started on this machine, or None when it can."""
    missing = [name for name in (*DAEMONS, *CLIENTS) if shutil.which(name) is None
               and not Path("/usr/sbin", name).exists()]
    if missing:
        return (f"{', '.join(missing)} not installed; `apt-get install slurm-wlm munge` "
                "(as .ci/run does)")
    if os.geteuid() != 0:
        return "slurmd must run as root to start jobs, and this test runs as a normal user"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _binary(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


@dataclass
class Cluster:
    """A started one-node cluster: ``env`` points SLURM's commands at it (``SLURM_CONF``)."""

    folder: Path
    node: str
    cpus: int
    env: dict[str, str]
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @classmethod
    def start(cls, folder: Path, *, timeout: float = 30.0) -> Cluster:
        """Configure and start munged, slurmctld and slurmd under ``folder``; wait until the node
        is idle. Raises :class:`ClusterUnavailable` with the daemons' last log lines if not."""
        reason = unavailable_reason()
        if reason:
            raise ClusterUnavailable(reason)
        folder.mkdir(parents=True, exist_ok=True)
        for sub in ("munge", "state", "spool", "log"):
            (folder / sub).mkdir(exist_ok=True)
        (folder / "munge").chmod(0o700)  # munged refuses a key or socket others could reach
        key = folder / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        node = socket.gethostname().split(".")[0]
        cpus = os.cpu_count() or 1
        conf = folder / "slurm.conf"
        conf.write_text(_config(folder, node, cpus), encoding="utf-8")
        cluster = cls(folder=folder, node=node, cpus=cpus,
                      env={"SLURM_CONF": str(conf)})
        commands = {
            "munged": [_binary("munged"), "--foreground", "--force", f"--key-file={key}",
                       f"--socket={folder / 'munge' / 'munge.sock'}",
                       f"--pid-file={folder / 'munge' / 'munged.pid'}",
                       f"--seed-file={folder / 'munge' / 'munged.seed'}",
                       f"--log-file={folder / 'log' / 'munged.log'}"],
            "slurmctld": [_binary("slurmctld"), "-D", "-i", "-f", str(conf)],
            "slurmd": [_binary("slurmd"), "-D", "-N", node, "-f", str(conf)],
        }
        try:
            for name, command in commands.items():
                out = open(folder / "log" / f"{name}.out", "wb")  # noqa: SIM115 (kept by Popen)
                cluster.processes[name] = subprocess.Popen(
                    command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    env={**os.environ, **cluster.env})
                if name == "munged":
                    cluster._wait_for(lambda: (folder / "munge" / "munge.sock").exists(),
                                      timeout, "munged's socket")
            cluster._wait_for(cluster._node_ready, timeout, "the node to be idle")
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def _wait_for(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [n for n, p in self.processes.items() if p.poll() is not None]
            if dead:
                raise ClusterUnavailable(f"{', '.join(dead)} exited while waiting for {what}:\n"
                                         + self.log_tail())
            if ready():
                return
            time.sleep(0.2)
        raise ClusterUnavailable(f"timed out after {timeout:.0f} s waiting for {what}:\n"
                                 + self.log_tail())

    def _node_ready(self) -> bool:
        done = subprocess.run(["sinfo", "-h", "-o", "%T"], env=self.client_env(),
                              capture_output=True, text=True, check=False)
        return done.returncode == 0 and done.stdout.strip() == "idle"

    def log_tail(self, lines: int = 8) -> str:
        out = []
        for path in sorted((self.folder / "log").glob("*")):
            text = path.read_text(encoding="utf-8", errors="replace").splitlines()
            out += [f"  {path.name}: {line}" for line in text[-lines:]]
        return "\n".join(out)

    def client_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The environment for SLURM commands (and the jobs they submit, which inherit it)."""
        return {**os.environ, **self.env, **(extra or {})}

    def pipeline_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """What a user's shell would hold when submitting: this interpreter's ``python3`` first on
        PATH and the package importable from anywhere (the jobs inherit it: ``--export=ALL``)."""
        return self.client_env({
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": str(ROOT), **(extra or {})})

    def submit(self, *args: str, env: dict[str, str], cwd: Path) -> tuple[str, str]:
        """Run ``slurm/submit ARGS``; return (job array id, publish job id)."""
        done = subprocess.run([str(SUBMIT), *args], cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=60, check=False)
        array = re.search(r"submitted job array (\d+) \(tasks \S+ of \d+\)", done.stdout)
        publish = re.search(r"submitted job (\d+) \(version \+ publish", done.stdout)
        if done.returncode != 0 or not array or not publish:
            raise RuntimeError(f"slurm/submit exited {done.returncode}:\n{done.stdout}"
                               f"{done.stderr}")
        return array.group(1), publish.group(1)

    def run(self, *command: str) -> str:
        done = subprocess.run(list(command), env=self.client_env(), capture_output=True,
                              text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: {done.stderr}")
        return done.stdout

    def jobs(self, job_id: str) -> dict[str, dict[str, str]]:
        """``scontrol show job`` of a job or job array: ``{job or array index: fields}``."""
        found = {}
        for line in self.run("scontrol", "-o", "show", "job", job_id).splitlines():
            fields = dict(re.findall(r"(\w+)=(\S*)", line))
            if fields:
                found[fields.get("ArrayTaskId") or fields["JobId"]] = fields
        return found

    def wait(self, *job_ids: str, timeout: float = 90.0,
             poll: float = 0.3) -> dict[str, dict[str, dict[str, str]]]:
        """Wait until every task of every job has finished; return their ``jobs()``.

        Array tasks that never started are shown as one pending entry ("2-4"), so this waits
        until no entry is left in a state that can still run.
        """
        deadline = time.monotonic() + timeout
        while True:
            seen = {job: self.jobs(job) for job in job_ids}
            if all(f["JobState"] in FINISHED for tasks in seen.values() for f in tasks.values()):
                return seen
            if time.monotonic() > deadline:
                raise TimeoutError(f"jobs {job_ids} still running after {timeout:.0f} s: "
                                   + "; ".join(f"{j} {k}: {f['JobState']} {f.get('Reason')}"
                                               for j, t in seen.items() for k, f in t.items())
                                   + "\n" + self.log_tail())
            time.sleep(poll)

    def stop(self) -> None:
        """Cancel every job, then stop slurmd, slurmctld and munged (their own pids only)."""
        if "slurmctld" in self.processes and self.processes["slurmctld"].poll() is None:
            subprocess.run(["scancel", "--me"], env=self.client_env(), capture_output=True,
                           check=False, timeout=20)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                left = subprocess.run(["squeue", "-h"], env=self.client_env(),
                                      capture_output=True, text=True, check=False, timeout=20)
                if left.returncode != 0 or not left.stdout.strip():
                    break
                time.sleep(0.3)
        for name in reversed(DAEMONS):
            process = self.processes.get(name)
            if process is None or process.poll() is not None:
                continue
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def _config(folder: Path, node: str, cpus: int) -> str:
    """slurm.conf of a one-node cluster in a container: localhost, no cgroups, no accounting."""
    return f"""\
ClusterName=pipeline-test
SlurmctldHost={node}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
AuthInfo=socket={folder / 'munge' / 'munge.sock'}
CredType=cred/munge
StateSaveLocation={folder / 'state'}
SlurmdSpoolDir={folder / 'spool'}
SlurmctldPidFile={folder / 'slurmctld.pid'}
SlurmdPidFile={folder / 'slurmd.pid'}
SlurmctldLogFile={folder / 'log' / 'slurmctld.log'}
SlurmdLogFile={folder / 'log' / 'slurmd.log'}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
MailProg=/bin/true
KillWait=2
MinJobAge=600
SlurmctldDebug=info
SlurmdDebug=info
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""
