"""The command line: ``python -m pipeline [--manifest M] [--workdir W] COMMAND [options]``.

SPEC section 3 fixes the commands, flags and exit codes: 0 success (including "nothing new"),
1 a stage failed (progress so far is kept), 2 bad usage or an invalid manifest. Each command is a
short function that loads what it needs, calls one stage module, prints a summary, and (in
GitHub Actions) writes step outputs and a job summary. Stage modules never print; they return
results and raise :class:`pipeline.errors.PipelineError`.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pipeline import __version__
from pipeline.errors import PipelineError, UsageError, redact
from pipeline.manifest import Manifest, load
from pipeline.scaling import DEFAULT_MAX_SHARDS, DEFAULT_RECORDS_PER_SHARD, parse_jobs
from pipeline.state import State, ingest_outcomes

log = logging.getLogger("pipeline")


# -- shared helpers -------------------------------------------------------------------------

def _manifest(args: argparse.Namespace) -> Manifest:
    return load(args.manifest)


def _workdir(args: argparse.Namespace, manifest: Manifest) -> Path:
    workdir = Path(args.workdir) if args.workdir else manifest.path.resolve().parent / "work"
    workdir.mkdir(parents=True, exist_ok=True)
    return workdir


def _state(manifest: Manifest, workdir: Path) -> State:
    state = State.load(manifest.state_path)
    folded = ingest_outcomes(state, workdir)
    if folded:
        log.info("state: folded %d record outcome(s) from %s", folded, workdir / "outcomes")
    return state


def _report(command: str, *, ok: bool = True, outputs: dict[str, Any] | None = None,
            tables: dict[str, list[dict[str, Any]]] | None = None,
            notes: Sequence[str] = ()) -> None:
    """Step outputs and a job summary when running in GitHub Actions (no-ops elsewhere)."""
    from pipeline import actions

    actions.report_step(command, ok=ok, outputs=outputs, tables=tables, notes=notes)


def version_outputs(state: State, version: str | None) -> dict[str, Any]:
    """The step outputs every version-related command shares: ``version``, ``doi``,
    ``kaggle_url`` and ``new_records`` (added + updated records of that version)."""
    entry = next((v for v in state.versions if v["version"] == version), None)
    if entry is None:
        return {"version": "", "doi": "", "kaggle_url": "", "new_records": 0}
    published = entry.get("published", {})
    counts = entry.get("counts", {})
    return {"version": version, "doi": published.get("zenodo", {}).get("doi", ""),
            "kaggle_url": published.get("kaggle", {}).get("url", ""),
            "new_records": int(counts.get("added", 0)) + int(counts.get("updated", 0))}


def _table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*map(str, r)) for r in rows]
    return "\n".join(lines)


# -- commands -------------------------------------------------------------------------------

def cmd_detect(args: argparse.Namespace) -> int:
    from pipeline.detect import detect
    from pipeline.zenodo import ZenodoClient

    manifest = _manifest(args)
    workdir = _workdir(args, manifest)
    state = _state(manifest, workdir)
    out = Path(args.out) if args.out else workdir / "plan.json"
    client = ZenodoClient(manifest.source.zenodo)
    try:
        plan = detect(manifest, state, client, out=out, since=args.since, until=args.until,
                      record_ids=tuple(args.record or ()), max_records=args.max_records)
    finally:
        client.close()
    counts = plan.counts()
    total = len(plan.entries)
    print(f"detect: {total} record(s) planned ({counts['new']} new, {counts['updated']} updated, "
          f"{counts['retry']} retry), {len(plan.skipped)} skipped, "
          f"{plan.search_requests} search request(s); window {plan.since} .. {plan.until}; "
          f"plan: {out}")
    _report("detect", outputs={"planned": total, "has_work": total > 0, "plan": str(out),
                               **counts},
            tables={"Planned records": [{"record": e.id, "action": e.action, "reason": e.reason}
                                        for e in plan.entries]})
    return 0


def cmd_process(args: argparse.Namespace) -> int:
    from pipeline.process import parse_shard, process

    manifest = _manifest(args)
    workdir = _workdir(args, manifest)
    # Read-only: shards of a job array may share the workdir and the state file, so process
    # never writes the state; its outcome files are folded in by the next command.
    state = State.load(manifest.state_path)
    plan_path = Path(args.plan) if args.plan else workdir / "plan.json"
    shard = parse_shard(args.shard)
    log.info("process: shard %d/%d with %d worker process(es)", *shard, args.jobs)
    report = process(manifest, state, workdir, plan_path=plan_path, shard=shard, jobs=args.jobs)
    print(report.text())
    _report("process", ok=not report.failed, outputs=report.outputs(),
            tables={"Failed records": report.rows()})
    # Failed records are in their outcomes and retried by later runs; a job array whose next
    # job waits for success (SLURM afterok) must not be held up by them.
    return 1 if report.failed and not getattr(args, "allow_record_failures", False) else 0


def cmd_shards(args: argparse.Namespace) -> int:
    """Print how many ``--shard K/N`` jobs the plan needs (the N), for a matrix or job array."""
    from pipeline.detect import load_plan
    from pipeline.scaling import shard_count

    manifest = _manifest(args)
    workdir = _workdir(args, manifest)
    plan_path = Path(args.plan) if args.plan else workdir / "plan.json"
    if not plan_path.is_file():
        raise UsageError(f"no plan at {plan_path}",
                         hint="run `python -m pipeline detect` first, or pass --plan")
    planned = len(load_plan(plan_path))
    count = shard_count(planned, records_per_shard=args.records_per_shard,
                        max_shards=args.max_shards)
    print(count)
    print(f"shards: {planned} planned record(s) in {count} shard(s) of up to "
          f"{args.records_per_shard} (at most {args.max_shards} shards)", file=sys.stderr)
    _report("shards", outputs={"count": count, "shards": json.dumps(list(range(1, count + 1))),
                               "planned": planned},
            notes=[f"{planned} record(s) planned: {count} shard(s)"])
    return 0


def cmd_version(args: argparse.Namespace) -> int:
    from pipeline.version import build_version

    manifest = _manifest(args)
    workdir = _workdir(args, manifest)
    state = _state(manifest, workdir)
    built = build_version(manifest, state, workdir)
    if built is None:
        print("version: nothing changed since the last version; no new version")
        _report("version", outputs={"version": "", "new_version": False},
                notes=["Nothing changed since the last version."])
        return 0
    print(f"version: built {built.version} in {built.folder} ({built.counts})")
    _report("version", outputs={**built.counts, "new_version": True,
                                **version_outputs(state, built.version)},
            notes=[built.notes])
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from pipeline.publish import publish

    manifest = _manifest(args)
    workdir = _workdir(args, manifest)
    state = _state(manifest, workdir)
    report = publish(manifest, state, workdir, target=args.target, dry_run=args.dry_run)
    print(report.text())
    _report("publish", ok=not report.failed,
            outputs={**report.outputs(), **version_outputs(state, report.version)},
            notes=[report.markdown()])
    return 1 if report.failed else 0


def cmd_notify(args: argparse.Namespace) -> int:
    from pipeline.notify import notify

    manifest = _manifest(args)
    workdir = _workdir(args, manifest)
    state = _state(manifest, workdir)
    report = notify(manifest, state)
    for line in report.lines():
        print(line)
    newest = report.versions[-1] if report.versions else None
    _report("notify", ok=report.ok, outputs={**report.outputs(),
                                             **version_outputs(state, newest)},
            tables={"Notifications": report.rows()}, notes=report.lines())
    return 0 if report.ok else 1


def cmd_run(args: argparse.Namespace) -> int:
    """detect -> process -> version -> publish -> notify; stops at the first failing stage
    except that record failures in ``process`` do not stop the run (they are retried later)."""
    for name, extra in (("detect", {}), ("process", {"plan": args.out, "shard": None,
                                                      "jobs": args.jobs}),
                        ("version", {}), ("publish", {"target": args.target, "dry_run": False}),
                        ("notify", {})):
        sub = argparse.Namespace(**vars(args))
        for key, value in extra.items():
            setattr(sub, key, value)
        code = COMMANDS[name](sub)
        if code != 0 and name != "process":
            return code
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    manifest = _manifest(args)
    workdir = _workdir(args, manifest)
    state = _state(manifest, workdir)
    info = status_info(state)
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
        return 0
    print(f"state:   {manifest.state_path}")
    print(f"cursor:  {info['cursor'] or '(none: the first run starts at source.since)'}")
    c = info["counts"]
    print(f"records: {c['done']} done, {c['failed']} failed, {c['skipped']} skipped, "
          f"{info['pending']} pending")
    if info["failed"]:
        print("\nfailed records:")
        print(_table([(f["id"], f["attempts"], f["reason"][:90]) for f in info["failed"]],
                     ("record", "attempts", "reason")))
    if info["versions"]:
        print("\nversions:")
        print(_table([(v["version"], v["created"], v["records"], v["published"])
                      for v in info["versions"]], ("version", "created", "records", "published")))
    if info["destinations"]:
        print("\ndestinations:")
        for name, ids in sorted(info["destinations"].items()):
            print(f"  {name}: " + ", ".join(f"{k}={v}" for k, v in sorted(ids.items())
                                            if not isinstance(v, dict)))
    if info["journal"]:
        print("\npublishing in progress: " + json.dumps(info["journal"], sort_keys=True))
    return 0


def status_info(state: State) -> dict[str, Any]:
    """The facts ``status`` shows, as plain data (also its ``--json`` output)."""
    return {
        "cursor": state.cursor,
        "counts": state.counts(),
        "pending": len(state.pending),
        "failed": [{"id": rid, "attempts": r.get("attempts", 0), "reason": r.get("reason", "")}
                   for rid, r in sorted(state.failed().items())],
        "versions": [{"version": v["version"], "created": v.get("created", ""),
                      "records": v.get("counts", {}).get("records", ""),
                      "published": ", ".join(sorted(v.get("published", {}))) or "-"}
                     for v in state.versions],
        "destinations": state.destinations,
        "journal": state.journal,
        "last_run": state.last_run,
    }


def cmd_validate(args: argparse.Namespace) -> int:
    manifest = _manifest(args)
    folder = find_workflows(manifest.path)
    problems = validate_workflows(folder) if folder else []
    if problems:
        for p in problems:
            print(p, file=sys.stderr)
        return 2
    where = (f"the `python -m pipeline` commands of {folder} parse with this CLI" if folder
             else "no .github/workflows folder found beside the manifest or above it")
    print(f"validate: {manifest.path} is valid; {where}")
    return 0


def find_workflows(manifest_path: Path) -> Path | None:
    """The repository's ``.github/workflows``: in the working directory, or beside the manifest
    or one of its parent folders (a manifest may live in a sub-folder of the repository)."""
    candidates = [Path.cwd(), *manifest_path.resolve().parents]
    for base in candidates:
        folder = base / ".github" / "workflows"
        if folder.is_dir():
            return folder
    return None


PLACEHOLDER = "__EXPR__"


def validate_workflows(folder: Path) -> list[str]:
    """Check that every ``python -m pipeline ...`` line in the workflows parses with this CLI.

    Why: a renamed flag must fail the pull request, not the next scheduled run. ``${{ }}`` and
    ``$VAR`` expressions are replaced by a value that fits the option they are given to (its
    first choice, or 1 for numbers); a line that cannot be checked (``"$@"``, arrays) is
    reported, never skipped silently.
    """
    import yaml

    problems: list[str] = []
    parser = build_parser()
    for path in sorted(folder.glob("*.y*ml")):
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            problems.append(f"{path}: not valid YAML: {exc}")
            continue
        for job_name, job in (doc or {}).get("jobs", {}).items():
            for i, step in enumerate(job.get("steps", []) or []):
                where = f"{path}: job {job_name} step {i + 1} ({step.get('name', '')})"
                for line, words in _pipeline_commands(step.get("run") or ""):
                    if words is None:
                        problems.append(f"{where}: cannot check '{line.strip()}': use literal "
                                        "options or single $VARIABLES")
                        continue
                    try:
                        parser.parse_args(_fill_placeholders(parser, words))
                    except SystemExit:
                        problems.append(f"{where}: 'python -m pipeline {shlex.join(words)}' "
                                        "does not parse with this version of the CLI")
    return problems


def _pipeline_commands(script: str) -> list[tuple[str, list[str] | None]]:
    """``(line, argument list)`` of each ``python -m pipeline`` call in a shell script; the list
    is None when the line cannot be checked statically."""
    import re

    text = re.sub(r"\$\{\{[^}]*\}\}", PLACEHOLDER, script.replace("\\\n", " "))
    found: list[tuple[str, list[str] | None]] = []
    for line in text.splitlines():
        m = re.search(r"python3? -m pipeline\b(.*)", line)
        if not m:
            continue
        rest = re.split(r"\s(?:\||&&|;|\|\||>|2>)", " " + m.group(1))[0]
        if re.search(r"\$@|\$\*|\$\{[A-Za-z_][A-Za-z0-9_]*\[", rest):
            found.append((line, None))
            continue
        rest = re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", PLACEHOLDER, rest)
        try:
            found.append((line, shlex.split(rest)))
        except ValueError:
            found.append((line, None))
    return found


def _fill_placeholders(parser: argparse.ArgumentParser, words: list[str]) -> list[str]:
    """Replace each placeholder by a value valid for the option before it."""
    options: dict[str, argparse.Action] = {}
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for action in parser._actions:
        options.update({o: action for o in action.option_strings})
    for word in words:
        if word in sub.choices:
            for action in sub.choices[word]._actions:
                options.update({o: action for o in action.option_strings})
    out = []
    for i, word in enumerate(words):
        if PLACEHOLDER in word:
            action = options.get(words[i - 1]) if i else None
            if action is not None and action.choices:
                word = str(next(iter(action.choices)))
            elif action is not None and action.type in (int, parse_jobs):
                word = "1"
            else:
                word = word.replace(PLACEHOLDER, "x")
        out.append(word)
    return out


def cmd_sandbox(args: argparse.Namespace) -> int:
    from pipeline.sandbox import Sandbox

    sandbox = Sandbox(port=args.port, seed=args.seed)
    print(f"sandbox: serving on {sandbox.url} (Zenodo API, GitHub archives, Kaggle, webhooks); "
          "Ctrl-C stops it", flush=True)
    try:
        sandbox.server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.server._httpd.server_close()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from pipeline.demo import run_demo

    return run_demo(workdir=Path(args.workdir) if args.workdir else None)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "detect": cmd_detect, "process": cmd_process, "version": cmd_version,
    "publish": cmd_publish, "notify": cmd_notify, "run": cmd_run, "status": cmd_status,
    "validate": cmd_validate, "sandbox": cmd_sandbox, "demo": cmd_demo, "shards": cmd_shards,
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # exit code 2 with one clear line, as SPEC says
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m pipeline",
                description="Keep a code-images dataset of Zenodo software records alive.")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("--manifest", default="data_manifest.yaml",
                   help="the data manifest (default: data_manifest.yaml)")
    p.add_argument("--workdir", default=None,
                   help="working folder for plans, downloads, outputs and versions "
                        "(default: work/ beside the manifest)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    d = sub.add_parser("detect", help="find new/updated software records and write a plan")
    _detect_options(d)
    pr = sub.add_parser("process", help="fetch and convert the planned records")
    pr.add_argument("--plan", default=None, help="plan file (default: WORKDIR/plan.json)")
    pr.add_argument("--shard", default=None, metavar="K/N",
                    help="process only shard K of N (1-based), for matrix jobs and job arrays")
    pr.add_argument("--jobs", type=parse_jobs, default=1,
                    help="worker processes (default 1); 'auto': the CPUs this task was given")
    pr.add_argument("--allow-record-failures", action="store_true",
                    help="exit 0 when only records failed (they are retried by later runs)")
    sh = sub.add_parser("shards", help="print how many shards (matrix jobs, array tasks) the "
                                       "plan needs")
    sh.add_argument("--plan", default=None, help="plan file (default: WORKDIR/plan.json)")
    sh.add_argument("--records-per-shard", type=int, default=DEFAULT_RECORDS_PER_SHARD,
                    metavar="N", help=f"records per shard (default {DEFAULT_RECORDS_PER_SHARD})")
    sh.add_argument("--max-shards", type=int, default=DEFAULT_MAX_SHARDS, metavar="N",
                    help=f"upper bound (default {DEFAULT_MAX_SHARDS})")
    sub.add_parser("version", help="assemble a new dataset version (no-op when nothing changed)")
    pu = sub.add_parser("publish", help="publish the newest unpublished version")
    pu.add_argument("--target", choices=("zenodo", "kaggle", "all"), default="all")
    pu.add_argument("--dry-run", action="store_true",
                    help="print what would be uploaded, deleted and published; change nothing")
    sub.add_parser("notify", help="announce the newest published version not yet announced")
    r = sub.add_parser("run", help="detect, process, version, publish and notify in order")
    _detect_options(r)
    r.add_argument("--jobs", type=parse_jobs, default=1,
                   help="worker processes for process ('auto': the CPUs this task was given)")
    r.add_argument("--target", choices=("zenodo", "kaggle", "all"), default="all")
    st = sub.add_parser("status", help="cursor, counts, failed records, versions, destinations")
    st.add_argument("--json", action="store_true", help="machine-readable output")
    sub.add_parser("validate", help="check the manifest and the workflows")
    sb = sub.add_parser("sandbox", help="serve the embedded sandbox until stopped")
    sb.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (default 8765)")
    sb.add_argument("--seed", type=int, default=0, help="corpus seed (default 0)")
    sub.add_parser("demo", help="the whole pipeline against the embedded sandbox")
    return p


def _detect_options(d: argparse.ArgumentParser) -> None:
    d.add_argument("--since", default=None, metavar="ISO",
                   help="harvest from this time instead of the cursor")
    d.add_argument("--until", default=None, metavar="ISO", help="harvest up to this time")
    d.add_argument("--record", action="append", metavar="ID",
                   help="plan these record ids only (repeatable)")
    d.add_argument("--max-records", type=int, default=None, metavar="N",
                   help="plan at most N records (default: source.max_records_per_run)")
    d.add_argument("--out", default=None, help="plan file (default: WORKDIR/plan.json)")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        if getattr(args, "jobs", 1) < 1:
            raise UsageError(f"--jobs must be at least 1, got {args.jobs}")
        return COMMANDS[args.command](args)
    except PipelineError as exc:
        message = str(exc)
        print(f"error: {message}" if exc.exit_code != 2 or "\n" not in message else message,
              file=sys.stderr)
        _report(args.command, ok=False, outputs={"error": redact(message.splitlines()[0])},
                notes=[f"```\n{redact(message)}\n```"])
        return exc.exit_code
