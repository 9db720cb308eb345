"""The command line: ``pipeline [--manifest M] [--workdir W] [-v|-q] [--json] COMMAND [options]``.

SPEC section 3 fixes the commands, flags and exit codes: 0 success (including "nothing new"),
1 a stage failed (progress so far is kept), 2 bad usage or an invalid manifest; SPEC section 15
adds 130 / 143 for Ctrl-C / SIGTERM. Each command is a short function that loads what it needs,
calls one stage module and returns a :class:`Result`: a summary in words, the same facts as data
(``--json``) and the next step to take. :func:`main` prints it once, writes the GitHub Actions
step outputs and job summary, and turns every way a command can end (an error, a signal, bad
arguments, a closed pipe) into one line. Stage modules never print; they return results and raise
:class:`pipeline.errors.PipelineError`.

Global options (``--manifest``, ``--workdir``, ``-v``, ``-q``, ``--json``) are accepted before
or after the command name: operators type ``pipeline status --json`` as often as
``pipeline --json status``.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import shlex
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from pipeline import __version__
from pipeline.errors import PipelineError, UsageError, redact
from pipeline.manifest import Manifest, load
from pipeline.scaling import parse_jobs
from pipeline.state import State, ingest_outcomes

log = logging.getLogger("pipeline")
PROG = "pipeline"


# -- shared helpers -------------------------------------------------------------------------

@dataclass
class Result:
    """What a command reports: ``lines`` for people, ``data`` for ``--json``, the exit code,
    and the command to run next (None when there is nothing to do)."""

    code: int = 0
    lines: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    next_step: str | None = None


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


def invocation(args: argparse.Namespace, command: str = "") -> str:
    """``pipeline [--manifest M] [--workdir W] COMMAND``: how this user runs ``command``, so
    advice printed to them can be pasted as it is."""
    words = [PROG]
    if args.manifest != "data_manifest.yaml":
        words += ["--manifest", args.manifest]
    if args.workdir:
        words += ["--workdir", args.workdir]
    return shlex.join(words + shlex.split(command))


def _report(command: str, *, ok: bool = True, outputs: dict[str, Any] | None = None,
            tables: dict[str, list[dict[str, Any]]] | None = None,
            notes: Sequence[str] = ()) -> None:
    """Step outputs and a job summary when running in GitHub Actions (no-ops elsewhere)."""
    from pipeline import actions

    actions.report_step(command, ok=ok, outputs=outputs, tables=tables, notes=notes)


# -- commands -------------------------------------------------------------------------------

def _context(args: argparse.Namespace) -> Any:
    from pipeline.orchestrate import Context

    manifest = _manifest(args)
    return Context(manifest=manifest, workdir=_workdir(args, manifest))


def _stage(args: argparse.Namespace, stage: Any) -> Result:
    """A stage's :class:`pipeline.orchestrate.StageResult` as this command's result; the step
    outputs and job summary are written here, once."""
    _report(stage.name, ok=stage.ok, outputs=stage.outputs, tables=stage.tables,
            notes=stage.notes)
    step = None
    if stage.next:
        step = invocation(args, stage.next) + (f" {stage.next_note}" if stage.next_note else "")
    return Result(0 if stage.ok else 1, stage.text.splitlines(), stage.data, step)


def _detect_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {"out": Path(args.out) if args.out else None, "since": args.since or None,
            "until": args.until or None, "record_ids": tuple(args.record or ()),
            "max_records": args.max_records}


def cmd_detect(args: argparse.Namespace) -> Result:
    from pipeline.orchestrate import detect_stage

    return _stage(args, detect_stage(_context(args), **_detect_kwargs(args)))


def cmd_process(args: argparse.Namespace) -> Result:
    from pipeline.orchestrate import process_stage

    log.info("process: shard %s with %d worker process(es)", args.shard or "1/1", args.jobs)
    result = _stage(args, process_stage(_context(args), plan=Path(args.plan) if args.plan
                                        else None, shard=args.shard, jobs=args.jobs))
    # Failed records are in their outcomes and retried by later runs; a job array whose next
    # job waits for success (SLURM afterok) must not be held up by them.
    if args.allow_record_failures:
        result.code = 0
    return result


def cmd_version(args: argparse.Namespace) -> Result:
    from pipeline.orchestrate import version_stage

    return _stage(args, version_stage(_context(args)))


def cmd_publish(args: argparse.Namespace) -> Result:
    from pipeline.orchestrate import publish_stage

    return _stage(args, publish_stage(_context(args), target=args.target,
                                      dry_run=args.dry_run))


def cmd_notify(args: argparse.Namespace) -> Result:
    from pipeline.orchestrate import notify_stage

    return _stage(args, notify_stage(_context(args)))


def cmd_run(args: argparse.Namespace) -> Result:
    """detect -> process -> version -> publish -> notify (:func:`pipeline.orchestrate.run_all`);
    each stage's words are printed as it ends, and ``--json`` gets every stage's data."""
    from pipeline.orchestrate import run_all

    data: dict[str, Any] = {}
    last: list[Result] = []

    def started(name: str) -> None:
        _STAGE[0] = name

    def ended(stage: Any) -> None:
        result = _stage(args, stage)
        data[stage.name] = result.data
        if not args.json:
            _print_lines(result.lines)
        last[:] = [result]

    ok = run_all(_context(args), on_stage=ended, on_start=started,
                 detect_options=_detect_kwargs(args), jobs=args.jobs, target=args.target)
    step = last[0].next_step if last and not ok else None
    return Result(0 if ok else 1, [], data, step)


def cmd_status(args: argparse.Namespace) -> Result:
    from pipeline.status import status_info, status_text

    manifest = _manifest(args)
    workdir = _workdir(args, manifest)
    state = _state(manifest, workdir)
    info = status_info(state)
    text = status_text(info, state_path=str(manifest.state_path), command=invocation(args))
    return Result(0, text.splitlines(), info)


def cmd_validate(args: argparse.Namespace) -> Result:
    manifest = _manifest(args)
    folder = find_workflows(manifest.path)
    problems = validate_workflows(folder) if folder else []
    data = {"manifest": str(manifest.path), "valid": not problems,
            "workflows": str(folder) if folder else None, "problems": problems}
    if problems:
        for p in problems:
            print(p, file=sys.stderr)
        return Result(2, [], data)
    where = (f"the `pipeline` commands of {folder} parse with this CLI" if folder
             else "no .github/workflows folder found beside the manifest or above it")
    return Result(0, [f"validate: {manifest.path} is valid; {where}"], data)


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
            option = options.get(words[i - 1]) if i else None
            if option is not None and option.choices:
                word = str(next(iter(option.choices)))
            else:
                word = _valid_fill(word, option)
        out.append(word)
    return out


FILLERS = ("1", "2026-01-01T00:00:00Z", "x")


def _valid_fill(word: str, action: argparse.Action | None) -> str:
    """``word`` with its placeholders replaced by the first filler the option's type accepts
    (a number, a time, a name): ``--shard ${{ a }}/${{ b }}`` becomes ``1/1``."""
    convert = action.type if action is not None and callable(action.type) else str
    for filler in FILLERS:
        candidate = word.replace(PLACEHOLDER, filler)
        try:
            convert(candidate)
        except (argparse.ArgumentTypeError, TypeError, ValueError):
            continue
        return candidate
    return word.replace(PLACEHOLDER, "x")


def cmd_check_run(args: argparse.Namespace) -> Result:
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
    return Result(0)


def cmd_shards(args: argparse.Namespace) -> Result:
    """How many ``--shard K/N`` jobs the plan needs (the N), for a GitHub matrix or a SLURM job
    array: the number alone on stdout (``N=$(pipeline shards)``), the matrix as step outputs."""
    from pipeline import workflow
    from pipeline.detect import load_plan

    manifest = _manifest(args)
    plan = Path(args.plan) if args.plan else _workdir(args, manifest) / "plan.json"
    planned = len(load_plan(plan)) if plan.is_file() else 0
    count = workflow.shard_count(planned, records_per_shard=args.records_per_shard,
                                 max_shards=args.max_shards)
    log.info("shards: %d planned record(s) in %d shard(s) of up to %d (at most %d shards)",
             planned, count, args.records_per_shard, args.max_shards)
    _report("shards", outputs={"count": count, "shards": json.dumps(list(range(1, count + 1))),
                               "planned": planned})
    return Result(0, [str(count)], {"count": count, "planned": planned,
                                    "shards": list(range(1, count + 1))})


def cmd_check_outcomes(args: argparse.Namespace) -> Result:
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
    return Result(0)


def cmd_sandbox(args: argparse.Namespace) -> Result:
    """Serve the sandbox and tell the operator how to aim the pipeline at it (README "Driving
    the sandbox by hand"): a manifest, the ``export`` lines of its credentials, and the endpoint
    that adds records to it. Ends only by a signal (exit 130 / 143, one line)."""
    from pipeline.sandbox import Sandbox

    try:
        sandbox = Sandbox(port=args.port, seed=args.seed)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise PipelineError(f"port {args.port} on 127.0.0.1 is already in use",
                                stage="sandbox", hint="stop what holds it, or choose another "
                                "--port (--port 0 picks a free one)") from None
        raise PipelineError(f"cannot serve on 127.0.0.1:{args.port}: {exc.strerror}",
                            stage="sandbox", hint="choose another --port") from None
    try:
        _announce_sandbox(args, sandbox.url)
    except BaseException:
        sandbox.server._httpd.server_close()
        raise
    sandbox.server.start()
    try:
        while True:  # until Ctrl-C or SIGTERM, which main reports
            signal.pause()
    finally:
        sandbox.stop()


def _announce_sandbox(args: argparse.Namespace, url: str) -> None:
    """Print (and write, when asked) the manifest and credentials for the sandbox at ``url``."""
    from pipeline import demo

    manifest_text = demo.sandbox_manifest_text(url)
    exports = demo.export_lines(url)
    out = [f"sandbox: serving on {url} (Zenodo API, GitHub archives, Kaggle, webhooks); "
           "Ctrl-C stops it"]
    if args.write_manifest:
        path = Path(args.write_manifest)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(manifest_text, encoding="utf-8")
        out.append(f"manifest: {path} (aimed at this sandbox)")
    else:
        out += ["manifest aimed at this sandbox (save it, or use --write-manifest FILE):", "",
                manifest_text]
    if args.write_env:
        Path(args.write_env).parent.mkdir(parents=True, exist_ok=True)
        Path(args.write_env).write_text(exports + "\n", encoding="utf-8")
        out.append(f"credentials: {args.write_env} (`. {args.write_env}` sets them)")
    out += ["credentials the sandbox accepts (paste into your shell):", exports,
            f"add records:   curl -X POST '{url}/sandbox/records?count=4'  (publishes 4 new "
            "records now)",
            f"deliveries:    curl '{url}/hooks'"]
    if args.json:
        print(json.dumps({"url": url, "manifest": manifest_text,
                          "environment": demo.sandbox_environ(url)}), flush=True)
    elif not args.quiet:
        _print_lines(out)
    else:
        print(out[0], flush=True)


def cmd_demo(args: argparse.Namespace) -> Result:
    from pipeline.demo import run_demo

    return Result(run_demo(workdir=Path(args.workdir) if args.workdir else None))


COMMANDS: dict[str, Callable[[argparse.Namespace], Result]] = {
    "detect": cmd_detect, "process": cmd_process, "version": cmd_version,
    "publish": cmd_publish, "notify": cmd_notify, "run": cmd_run, "status": cmd_status,
    "validate": cmd_validate, "sandbox": cmd_sandbox, "demo": cmd_demo,
    "check-run": cmd_check_run, "shards": cmd_shards, "check-outcomes": cmd_check_outcomes,
}


# -- arguments ------------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        """Exit code 2 with one line (SPEC §3, §15): what is wrong and where help is."""
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def iso_time(text: str) -> str:
    """An ``--since``/``--until`` value: an ISO 8601 date or time (UTC when no zone given).
    Empty means "not given" (the workflow passes its optional input through as it is)."""
    from pipeline.zenodo import parse_ts

    if not text.strip():
        return ""
    try:
        parse_ts(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 date or time; expected e.g. 2026-11-20 or "
            "2026-11-20T06:00:00Z") from None
    return text


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def port_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {text!r}")
    return value


def shard_spec(text: str) -> str:
    from pipeline.process import parse_shard

    try:
        parse_shard(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None
    return text


def _global_options(p: argparse.ArgumentParser, *, defaults: bool) -> None:
    """The options every command takes; on the sub-commands they default to SUPPRESS so a value
    given before the command name is not overwritten by the default after it."""
    def d(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    p.add_argument("--manifest", default=d("data_manifest.yaml"),
                   help="the data manifest (default: data_manifest.yaml)")
    p.add_argument("--workdir", default=d(None),
                   help="working folder for plans, downloads, outputs and versions "
                        "(default: work/ beside the manifest)")
    p.add_argument("-v", "--verbose", action="store_true", default=d(False),
                   help="debug logging")
    p.add_argument("-q", "--quiet", action="store_true", default=d(False),
                   help="only the result line, warnings and errors: no progress bars, "
                        "no hints")
    p.add_argument("--json", action="store_true", default=d(False),
                   help="print the result as one JSON object on stdout")


TARGET_HELP = ("where to publish: zenodo, kaggle, or all enabled destinations (default all); "
               "a destination disabled in the manifest is skipped either way")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="Keep a code-images dataset of Zenodo software records "
                "alive: detect new records, turn their code into images, version, publish and "
                "announce the dataset. `pipeline demo` shows it all against a local sandbox.")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _global_options(p, defaults=True)
    common = _Parser(add_help=False)
    _global_options(common, defaults=False)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser,
                           metavar="COMMAND")

    def command(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=summary, description=description, parents=[common])

    d = command("detect", "find new/updated software records and write a plan",
                "Search Zenodo for software records new or changed since the last run (the "
                "cursor in the state) and write the plan that `process` works through.")
    _detect_options(d)
    pr = command("process", "fetch and convert the planned records",
                 "Download each planned record's archive (md5-verified), turn its source files "
                 "into 80x80 code images and write one HDF5 + JSON per record. Interrupted, "
                 "it keeps the finished records; run it again to do the rest.")
    pr.add_argument("--plan", default=None, help="plan file (default: WORKDIR/plan.json)")
    pr.add_argument("--shard", default=None, metavar="K/N", type=shard_spec,
                    help="process only shard K of N (1-based), for matrix jobs and job arrays")
    pr.add_argument("--jobs", type=parse_jobs, default=1, metavar="N",
                    help="worker processes (default 1); 'auto': the CPUs this task was given "
                         "(SLURM_CPUS_PER_TASK, else the CPUs it may run on)")
    pr.add_argument("--allow-record-failures", action="store_true",
                    help="exit 0 when only records failed (they are retried by later runs); "
                         "for job arrays whose next job waits for success")
    command("version", "assemble a new dataset version (no-op when nothing changed)",
            "Fold the processed records into a new immutable dataset version (HDF5 parts, "
            "index, dataset card, changelog, checksums). Does nothing when nothing changed.")
    pu = command("publish", "publish the newest unpublished version",
                 "Publish the newest built version to Zenodo (a new version of one concept "
                 "record, with a DOI) and Kaggle. Safe to interrupt and rerun: it finishes the "
                 "same version and never creates a second one.")
    pu.add_argument("--target", choices=("zenodo", "kaggle", "all"), default="all",
                    help=TARGET_HELP)
    pu.add_argument("--dry-run", action="store_true",
                    help="print what would be uploaded, deleted and published; change nothing")
    command("notify", "announce the newest published version not yet announced",
            "Announce the newest version published to every enabled destination: the Atom "
            "feed, signed webhooks, Slack and repository_dispatch. Failed channels are "
            "retried by the next run.")
    r = command("run", "detect, process, version, publish and notify in order",
                "The whole pipeline: detect, process, version, publish and notify. Record "
                "failures do not stop it; any other failing stage does.")
    _detect_options(r)
    r.add_argument("--jobs", type=parse_jobs, default=1, metavar="N",
                   help="worker processes for process (a number, or 'auto')")
    r.add_argument("--target", choices=("zenodo", "kaggle", "all"), default="all",
                   help=TARGET_HELP)
    command("status", "records, versions, notifications and publishing in progress",
            "What the state file says: the cursor, pending and failed records with reasons, "
            "versions and where they are published, failed notifications, and a publish in "
            "progress with its step.")
    command("validate", "check the manifest and the workflows",
            "Check the manifest against its schema (every problem on one line) and that the "
            "workflows' `pipeline` commands parse with this version of the CLI.")
    sb = command("sandbox", "serve the embedded sandbox until stopped",
                 "Serve the embedded sandbox (Zenodo, GitHub archives, Kaggle, webhook "
                 "receiver) on 127.0.0.1 and print a manifest aimed at it and the credentials "
                 "it accepts, to drive the pipeline by hand (README: Driving the sandbox by "
                 "hand).")
    sb.add_argument("--port", type=port_number, default=8765,
                    help="port on 127.0.0.1 (default 8765; 0 picks a free one)")
    sb.add_argument("--seed", type=int, default=0, help="corpus seed (default 0)")
    sb.add_argument("--write-manifest", default=None, metavar="FILE",
                    help="write the manifest aimed at this sandbox to FILE")
    sb.add_argument("--write-env", default=None, metavar="FILE",
                    help="write the credentials' `export` lines to FILE (source it)")
    command("demo", "the whole pipeline against the embedded sandbox",
            "Run the pipeline three times against a fresh embedded sandbox in a temporary "
            "folder: version 1, a run with nothing new, then version 2 after new records "
            "appear. Needs no network and no credentials.")
    _workflow_commands(command)
    return p


def _workflow_commands(command: Callable[..., argparse.ArgumentParser]) -> None:
    """The decisions of the scheduled workflow (:mod:`pipeline.workflow`)."""
    from pipeline.workflow import MAX_SHARDS, RECORDS_PER_SHARD

    c = command("check-run", "check a workflow run's inputs and publish mode; locate the "
                "state; report unfinished work",
                "The scheduled workflow's first step: refuse malformed run inputs and a sandbox "
                "run whose manifest publishes to zenodo.org, say where the state and feed are, "
                "and whether an earlier run left work unfinished.")
    c.add_argument("--publish", default="production", help="none, sandbox or production")
    c.add_argument("--targets", default="all", help="all, zenodo or kaggle")
    c.add_argument("--since", default="", help="the run's since input (checked only)")
    c.add_argument("--records", default="", help="the run's records input (checked only)")
    c.add_argument("--max-records", default="", help="the run's max_records input (checked)")
    s = command("shards", "size the process matrix (or job array) from the plan",
                "How many process shards the plan needs: one per --records-per-shard records, "
                "at most --max-shards. Writes the count and the shard list as step outputs.")
    s.add_argument("--plan", default=None, help="plan file (default: WORKDIR/plan.json)")
    s.add_argument("--records-per-shard", type=int, default=RECORDS_PER_SHARD,
                   help=f"records per matrix job (default {RECORDS_PER_SHARD})")
    s.add_argument("--max-shards", type=int, default=MAX_SHARDS,
                   help=f"most matrix jobs (default {MAX_SHARDS})")
    o = command("check-outcomes", "fail when a planned record came back from no shard",
                "Before `version`: exit 1, naming the records and their shard, when a planned "
                "record has no outcome (a lost artifact would otherwise look like nothing new).")
    o.add_argument("--plan", default=None, help="plan file (default: WORKDIR/plan.json)")
    o.add_argument("--shards", type=int, required=True, help="the matrix's shard count")


def _detect_options(d: argparse.ArgumentParser) -> None:
    d.add_argument("--since", default=None, metavar="ISO", type=iso_time,
                   help="harvest from this time instead of the cursor")
    d.add_argument("--until", default=None, metavar="ISO", type=iso_time,
                   help="harvest up to this time")
    d.add_argument("--record", action="append", metavar="ID",
                   help="plan these record ids only (repeatable)")
    d.add_argument("--max-records", type=positive_int, default=None, metavar="N",
                   help="plan at most N records (default: source.max_records_per_run)")
    d.add_argument("--out", default=None, help="plan file (default: WORKDIR/plan.json)")


# -- running a command: printing, errors, signals, pipes ------------------------------------

_STAGE = [""]  # the stage running now (``run`` moves it along), for the interruption line

KEPT = {
    "detect": "nothing was changed (the cursor moves only when detect finishes)",
    "process": "finished records are kept (one outcome file each)",
    "version": "no half-built version is kept or used",
    "publish": "every finished step is kept in the state's publish journal, and the rerun "
               "finishes the same version",
    "notify": "channels already sent are recorded and not sent again",
    "run": "what the finished stages did is kept",
    "demo": "the demo's temporary folder is left as it is",
}


class Terminated(BaseException):
    """SIGTERM (how GitHub Actions, SLURM and systemd stop a job), raised in the main thread.

    A BaseException like KeyboardInterrupt, so that no ``except Exception`` in a stage takes it
    for a failure of one record or destination.
    """


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Terminated


def _interrupted_line(argv: Sequence[str], signame: str) -> str:
    stage = _STAGE[0] or "pipeline"
    if stage == "sandbox":  # how a sandbox is meant to end: nothing to resume
        return f"{PROG} sandbox: stopped by {signame}"
    again = shlex.join([PROG, *argv])
    return (f"{PROG} {stage}: interrupted by {signame}; "
            f"{KEPT.get(stage, 'progress so far is kept')}. To resume, run: {again}")


def _print_lines(lines: Sequence[str]) -> None:
    for line in lines:
        print(line, flush=True)


def _emit(args: argparse.Namespace, result: Result) -> None:
    if args.command == "sandbox":
        return
    if args.json:
        print(json.dumps(result.data, indent=2, sort_keys=True, default=str), flush=True)
        return
    if args.command != "run":
        _print_lines(result.lines)
    if result.next_step and not args.quiet:
        print(f"next: {result.next_step}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code (the console command exits with it)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _main(argv)
    except BrokenPipeError:
        # `pipeline status --json | head`: the reader left. Point stdout at /dev/null so the
        # interpreter's final flush does not fail a second time, and say it once.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        print(f"{PROG}: output closed early (broken pipe); the command's work is unaffected",
              file=sys.stderr)
        return 141


def _main(argv: list[str]) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or bad usage (already said in one line)
        return exc.code if isinstance(exc.code, int) else 2
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LogFormat())
    logging.basicConfig(level=level, handlers=[handler], force=True)
    _STAGE[0] = args.command
    previous = None
    if _is_main_thread():
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        result = COMMANDS[args.command](args)
        _emit(args, result)
        return result.code
    except PipelineError as exc:
        message = str(exc)
        print(f"error: {message}" if exc.exit_code != 2 or "\n" not in message else message,
              file=sys.stderr)
        if args.json:
            print(json.dumps({"error": redact(message), "exit_code": exc.exit_code}))
        _report(_STAGE[0] or args.command, ok=False,
                outputs={"error": redact(message.splitlines()[0])},
                notes=[f"```\n{redact(message)}\n```"])
        return exc.exit_code
    except KeyboardInterrupt:
        print(_interrupted_line(argv, "Ctrl-C (SIGINT)"), file=sys.stderr)
        return 130
    except Terminated:
        print(_interrupted_line(argv, "SIGTERM"), file=sys.stderr)
        return 143
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class _LogFormat(logging.Formatter):
    """Progress lines as they are (``process: record 123 done ...``); warnings and errors with
    their level; debug lines (``-v``) with the module that wrote them."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.levelno == logging.INFO:
            return message
        if record.levelno < logging.INFO:
            return f"debug {record.name}: {message}"
        return f"{record.levelname.lower()}: {message}"


def _is_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


