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


def _table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*map(str, r)) for r in rows]
    return "\n".join(lines)


# -- commands -------------------------------------------------------------------------------

def _context(args: argparse.Namespace) -> Any:
    from pipeline.orchestrate import Context

    manifest = _manifest(args)
    return Context(manifest=manifest, workdir=_workdir(args, manifest))


def _show(result: Any) -> int:
    from pipeline.actions import show

    return show(result)


def _detect_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {"out": Path(args.out) if args.out else None, "since": args.since,
            "until": args.until, "record_ids": tuple(args.record or ()),
            "max_records": args.max_records}


def cmd_detect(args: argparse.Namespace) -> int:
    from pipeline.orchestrate import detect_stage

    return _show(detect_stage(_context(args), **_detect_kwargs(args)))


def cmd_process(args: argparse.Namespace) -> int:
    from pipeline.orchestrate import process_stage

    return _show(process_stage(_context(args), plan=Path(args.plan) if args.plan else None,
                               shard=args.shard, jobs=args.jobs))


def cmd_version(args: argparse.Namespace) -> int:
    from pipeline.orchestrate import version_stage

    return _show(version_stage(_context(args)))


def cmd_publish(args: argparse.Namespace) -> int:
    from pipeline.orchestrate import publish_stage

    return _show(publish_stage(_context(args), target=args.target, dry_run=args.dry_run))


def cmd_notify(args: argparse.Namespace) -> int:
    from pipeline.orchestrate import notify_stage

    return _show(notify_stage(_context(args)))


def cmd_run(args: argparse.Namespace) -> int:
    """detect -> process -> version -> publish -> notify (:func:`pipeline.orchestrate.run_all`)."""
    from pipeline.orchestrate import run_all

    ok = run_all(_context(args), on_stage=_show, detect_options=_detect_kwargs(args),
                 jobs=args.jobs, target=args.target)
    return 0 if ok else 1


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
            elif action is not None and action.type is int:
                word = "1"
            else:
                word = word.replace(PLACEHOLDER, "x")
        out.append(word)
    return out


def cmd_check_run(args: argparse.Namespace) -> int:
    """The plan job's first decision: are the inputs sane, may this publish mode use this
    manifest (the sandbox guard), where are the state and the feed, and is earlier work left?"""
    from pipeline import actions, workflow

    inputs = workflow.RunInputs(publish=args.publish, targets=args.targets,
                                manifest=args.manifest, since=args.since, records=args.records,
                                max_records=args.max_records)
    problems = workflow.check_inputs(inputs, Path.cwd())
    for problem in problems:
        actions.annotate_error("Invalid input", problem)
    if problems:
        raise UsageError("invalid workflow input: " + "; ".join(problems))
    manifest = _manifest(args)
    refused = workflow.sandbox_guard(args.publish, manifest)
    if refused:
        actions.annotate_error("Sandbox mode", refused)
        raise UsageError(f"sandbox mode refused: {refused}")
    unfinished = workflow.unfinished_work(manifest, State.load(manifest.state_path))
    outputs = {"mode": args.publish, "manifest": args.manifest, "targets": args.targets,
               "environment": "" if args.publish == "none" else args.publish,
               **workflow.run_paths(manifest, Path.cwd()), "unfinished": bool(unfinished)}
    print(f"check-run: publish mode {args.publish} with {args.manifest} (targets: "
          f"{args.targets}); " + ("; ".join(unfinished) if unfinished else "no unfinished work"))
    _report("check-run", outputs=outputs, notes=unfinished)
    return 0


def cmd_shards(args: argparse.Namespace) -> int:
    from pipeline import workflow
    from pipeline.detect import load_plan

    manifest = _manifest(args)
    plan = Path(args.plan) if args.plan else _workdir(args, manifest) / "plan.json"
    planned = len(load_plan(plan)) if plan.is_file() else 0
    count = workflow.shard_count(planned, records_per_shard=args.records_per_shard,
                                 max_shards=args.max_shards)
    print(f"shards: {planned} record(s) planned: {count} shard(s) of about "
          f"{-(-planned // count)} record(s)")
    _report("shards", outputs={"count": count, "shards": list(range(1, count + 1)),
                               "planned": planned})
    return 0


def cmd_check_outcomes(args: argparse.Namespace) -> int:
    from pipeline import workflow

    manifest = _manifest(args)
    workdir = _workdir(args, manifest)
    plan = Path(args.plan) if args.plan else workdir / "plan.json"
    # Not _state(): folding the outcomes first would hide which ones are missing.
    missing = workflow.missing_outcomes(plan, State.load(manifest.state_path), workdir,
                                        args.shards)
    if missing:
        from pipeline import actions

        shards = sorted(set(missing.values()))
        actions.annotate_error("Missing shard results", f"{len(missing)} planned record(s) "
                               f"without an outcome: shard(s) {shards} of {args.shards}")
        raise PipelineError(
            f"{len(missing)} planned record(s) came back from no shard (shard(s) "
            f"{', '.join(map(str, shards))} of {args.shards}): "
            f"{', '.join(sorted(missing)[:10])}{' ...' if len(missing) > 10 else ''}",
            stage="check-outcomes", hint="a shard's artifact is missing; rerun the failed "
            "jobs, or run again: the records stay pending and come back in the next plan")
    print(f"check-outcomes: every planned record of {plan} has its outcome")
    _report("check-outcomes", outputs={"missing": 0})
    return 0


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
    "validate": cmd_validate, "sandbox": cmd_sandbox, "demo": cmd_demo,
    "check-run": cmd_check_run, "shards": cmd_shards, "check-outcomes": cmd_check_outcomes,
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
    pr.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    sub.add_parser("version", help="assemble a new dataset version (no-op when nothing changed)")
    pu = sub.add_parser("publish", help="publish the newest unpublished version")
    pu.add_argument("--target", choices=("zenodo", "kaggle", "all"), default="all")
    pu.add_argument("--dry-run", action="store_true",
                    help="print what would be uploaded, deleted and published; change nothing")
    sub.add_parser("notify", help="announce the newest published version not yet announced")
    r = sub.add_parser("run", help="detect, process, version, publish and notify in order")
    _detect_options(r)
    r.add_argument("--jobs", type=int, default=1, help="worker processes for process")
    r.add_argument("--target", choices=("zenodo", "kaggle", "all"), default="all")
    st = sub.add_parser("status", help="cursor, counts, failed records, versions, destinations")
    st.add_argument("--json", action="store_true", help="machine-readable output")
    sub.add_parser("validate", help="check the manifest and the workflows")
    sb = sub.add_parser("sandbox", help="serve the embedded sandbox until stopped")
    sb.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (default 8765)")
    sb.add_argument("--seed", type=int, default=0, help="corpus seed (default 0)")
    sub.add_parser("demo", help="the whole pipeline against the embedded sandbox")
    _workflow_commands(sub)
    return p


def _workflow_commands(sub: argparse._SubParsersAction) -> None:
    """The decisions of the scheduled workflow (:mod:`pipeline.workflow`)."""
    from pipeline.workflow import MAX_SHARDS, RECORDS_PER_SHARD

    c = sub.add_parser("check-run", help="check a workflow run's inputs and publish mode; "
                       "locate the state; report unfinished work")
    c.add_argument("--publish", default="production", help="none, sandbox or production")
    c.add_argument("--targets", default="all", help="all, zenodo or kaggle")
    c.add_argument("--since", default="", help="the run's since input (checked only)")
    c.add_argument("--records", default="", help="the run's records input (checked only)")
    c.add_argument("--max-records", default="", help="the run's max_records input (checked)")
    s = sub.add_parser("shards", help="size the process matrix from the plan")
    s.add_argument("--plan", default=None, help="plan file (default: WORKDIR/plan.json)")
    s.add_argument("--records-per-shard", type=int, default=RECORDS_PER_SHARD,
                   help=f"records per matrix job (default {RECORDS_PER_SHARD})")
    s.add_argument("--max-shards", type=int, default=MAX_SHARDS,
                   help=f"most matrix jobs (default {MAX_SHARDS})")
    o = sub.add_parser("check-outcomes", help="fail when a planned record came back from no "
                       "shard")
    o.add_argument("--plan", default=None, help="plan file (default: WORKDIR/plan.json)")
    o.add_argument("--shards", type=int, required=True, help="the matrix's shard count")


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
