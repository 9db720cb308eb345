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


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


# -- commands -------------------------------------------------------------------------------

def cmd_detect(args: argparse.Namespace) -> Result:
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
    _report("detect", outputs={"planned": total, "has_work": total > 0, "plan": str(out),
                               **counts},
            tables={"Planned records": [{"record": e.id, "action": e.action, "reason": e.reason}
                                        for e in plan.entries]})
    line = (f"detect: {_plural(total, 'record')} planned ({counts['new']} new, "
            f"{counts['updated']} updated, {counts['retry']} to retry), "
            f"{len(plan.skipped)} skipped, {_plural(plan.search_requests, 'search request')}; "
            f"window {plan.since} .. {plan.until}; plan written to {out}")
    data = {"planned": total, **counts, "skipped": len(plan.skipped), "plan": str(out),
            "since": plan.since, "until": plan.until, "search_requests": plan.search_requests,
            "records": [{"id": e.id, "action": e.action, "reason": e.reason}
                        for e in plan.entries]}
    step = None
    if total:
        step = invocation(args, "process" + (f" --plan {shlex.quote(args.out)}"
                                             if args.out else ""))
    return Result(0, [line], data, step)


def cmd_process(args: argparse.Namespace) -> Result:
    from pipeline.process import parse_shard, process

    manifest = _manifest(args)
    workdir = _workdir(args, manifest)
    # Read-only: shards of a job array may share the workdir and the state file, so process
    # never writes the state; its outcome files are folded in by the next command.
    state = State.load(manifest.state_path)
    plan_path = Path(args.plan) if args.plan else workdir / "plan.json"
    shard = parse_shard(args.shard)
    report = process(manifest, state, workdir, plan_path=plan_path, shard=shard, jobs=args.jobs)
    _report("process", ok=not report.failed, outputs=report.outputs(),
            tables={"Failed records": report.rows()})
    data = {**report.outputs(), "shard": f"{shard[0]}/{shard[1]}",
            "seconds": round(report.seconds, 3), "failed_records": report.rows()}
    lines = [report.text()]
    if report.failed:
        lines.append("failed records are retried by the next detect + process (up to "
                     "source.retry_limit); `pipeline status` lists them")
    step = invocation(args, "version") if report.done else None
    return Result(1 if report.failed else 0, lines, data, step)


def cmd_version(args: argparse.Namespace) -> Result:
    from pipeline.version import build_version

    manifest = _manifest(args)
    workdir = _workdir(args, manifest)
    state = _state(manifest, workdir)
    built = build_version(manifest, state, workdir)
    if built is None:
        _report("version", outputs={"version": "", "new_version": False},
                notes=["Nothing changed since the last version."])
        unpublished = bool(state.versions) and not state.versions[-1].get("published")
        return Result(0, ["version: nothing changed since the last version; no new version"],
                      {"new_version": False, "version": ""},
                      invocation(args, "publish") if unpublished else None)
    c = built.counts
    _report("version", outputs={**c, "new_version": True,
                                **version_outputs(state, built.version)},
            notes=[built.notes])
    line = (f"version: built {built.version}: {_plural(c.get('records', 0), 'record')} "
            f"({c.get('added', 0)} added, {c.get('updated', 0)} updated, "
            f"{c.get('removed', 0)} removed), {_plural(c.get('images', 0), 'image')} in "
            f"{_plural(c.get('parts', 0), 'part file')}; folder {built.folder}")
    return Result(0, [line], {"new_version": True, "version": built.version,
                              "folder": str(built.folder), "counts": c},
                  invocation(args, "publish"))


def cmd_publish(args: argparse.Namespace) -> Result:
    from pipeline.publish import publish

    manifest = _manifest(args)
    workdir = _workdir(args, manifest)
    state = _state(manifest, workdir)
    report = publish(manifest, state, workdir, target=args.target, dry_run=args.dry_run)
    _report("publish", ok=not report.failed,
            outputs={**report.outputs(), **version_outputs(state, report.version)},
            notes=[report.markdown()])
    data = {"version": report.version, "dry_run": report.dry_run, "failed": report.failed,
            "results": [{"destination": r.name, "outcome": r.outcome, "detail": r.detail,
                         "error": r.error, "lines": r.lines} for r in report.results]}
    if report.failed:
        step = (f"{invocation(args, 'publish')} again once the problem above is fixed; it "
                "resumes the same version")
    elif report.dry_run:
        step = invocation(args, "publish" + ("" if args.target == "all"
                                             else f" --target {args.target}"))
    elif any(r.outcome == "published" for r in report.results):
        step = invocation(args, "notify")
    else:
        step = None
    return Result(1 if report.failed else 0, report.text().splitlines(), data, step)


def cmd_notify(args: argparse.Namespace) -> Result:
    from pipeline.notify import notify

    manifest = _manifest(args)
    workdir = _workdir(args, manifest)
    state = _state(manifest, workdir)
    report = notify(manifest, state)
    newest = report.versions[-1] if report.versions else None
    _report("notify", ok=report.ok, outputs={**report.outputs(),
                                             **version_outputs(state, newest)},
            tables={"Notifications": report.rows()}, notes=report.lines())
    data = {"ok": report.ok, "results": report.rows(), "feed": report.feed_path,
            "given_up": [{"version": v, "channel": c} for v, c in report.given_up],
            "waiting": report.waiting}
    step = (f"{invocation(args, 'notify')} retries the failed channels (so does the next run)"
            if not report.ok else None)
    return Result(0 if report.ok else 1, report.lines(), data, step)


RUN_STAGES = ("detect", "process", "version", "publish", "notify")


def cmd_run(args: argparse.Namespace) -> Result:
    """detect -> process -> version -> publish -> notify; stops at the first failing stage
    except that record failures in ``process`` do not stop the run (they are retried later)."""
    extra: dict[str, dict[str, Any]] = {
        "process": {"plan": args.out, "shard": None, "jobs": args.jobs},
        "publish": {"target": args.target, "dry_run": False}}
    data: dict[str, Any] = {}
    code = 0
    for name in RUN_STAGES:
        sub = argparse.Namespace(**{**vars(args), **extra.get(name, {}), "command": name})
        _STAGE[0] = name
        result = COMMANDS[name](sub)
        data[name] = result.data
        if not args.json:
            _print_lines(result.lines)
        if result.code != 0:
            code = result.code
            if name != "process":
                return Result(code, [], data, None)
    return Result(code, [], data, None)


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
    pr.add_argument("--jobs", type=positive_int, default=1, metavar="N",
                    help="worker processes (default 1)")
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
    r.add_argument("--jobs", type=positive_int, default=1, metavar="N",
                   help="worker processes for process")
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
    return p


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


