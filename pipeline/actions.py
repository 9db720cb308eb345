"""GitHub Actions integration: step outputs and the Markdown job summary of every command.

Why: a scheduled run is read by people on the workflow's summary page and by later steps through
``steps.<id>.outputs`` (``if: steps.publish.outputs.version != ''``). The runner provides both as
files named by environment variables, and a command only has to *append* to them:

* ``GITHUB_OUTPUT``: one ``name=value`` line per output; a value with a line break must use the
  heredoc form ``name<<DELIMITER`` / value / ``DELIMITER``, with a delimiter that does not occur in
  the value (GitHub's toolkit uses ``ghadelimiter_<uuid>``; so do we). A bare multiline
  ``name=value`` would be cut at the first line or, since the 2022 "set-output" deprecation,
  could inject further outputs;
* ``GITHUB_STEP_SUMMARY``: GitHub-flavoured Markdown, shown on the run's page (1 MiB per step).

These files are appended to, never replaced, so unlike the pipeline's own outputs they do not go
through :mod:`pipeline.fsutil`: other commands in the same step may have written to them, and the
runner reads them after the step. Each writer makes one ``write`` call. Outside Actions (the
variables unset) the writers do nothing, so the CLI can call them unconditionally.

Values are passed through :func:`pipeline.errors.redact`: a secret in an output would be both a
leak and, as GitHub skips outputs that contain masked secrets, a silently missing output.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError, redact

MAX_TABLE_ROWS = 200


def text(value: object) -> str:
    """How a value reads in an output or a table cell: JSON for containers, ``true``/``false``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return str(value)


def format_output(name: str, value: object, *, delimiter: str | None = None) -> str:
    """One ``GITHUB_OUTPUT`` entry (with its final newline) for ``name`` = ``value``."""
    if not name or any(c in name for c in "=\r\n") or name.strip() != name:
        raise ValueError(f"invalid step output name {name!r}: no '=', line breaks or "
                         "surrounding spaces")
    value = redact(text(value))
    if "\n" not in value and "\r" not in value:
        return f"{name}={value}\n"
    delimiter = delimiter or f"ghadelimiter_{uuid.uuid4()}"
    if delimiter in value or delimiter in name:
        raise ValueError(f"the heredoc delimiter {delimiter!r} occurs in output {name!r}")
    return f"{name}<<{delimiter}\n{value}\n{delimiter}\n"


def format_outputs(outputs: Mapping[str, object]) -> str:
    return "".join(format_output(name, value) for name, value in outputs.items())


def _cell(value: object) -> str:
    """A Markdown table cell: pipes escaped, line breaks as ``<br>``."""
    cell = redact(text(value)).replace("\\", "\\\\").replace("|", "\\|")
    return cell.replace("\r\n", "<br>").replace("\n", "<br>").replace("\r", "<br>")


def markdown_table(rows: Sequence[Mapping[str, object]], columns: Sequence[str] | None = None,
                   *, max_rows: int = MAX_TABLE_ROWS) -> str:
    """A GitHub-flavoured Markdown table of ``rows`` (columns: given, or first-seen order)."""
    if not rows:
        return ""
    if columns is None:
        columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = ["| " + " | ".join(_cell(c) for c in columns) + " |",
             "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows[:max_rows]:
        lines.append("| " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |")
    if len(rows) > max_rows:
        lines.append(f"\n… and {len(rows) - max_rows} more rows")
    return "\n".join(lines) + "\n"


def key_value_table(values: Mapping[str, object]) -> str:
    """A two-column ``| name | value |`` table (empty values are left out)."""
    rows = [{"name": key, "value": value} for key, value in values.items() if text(value) != ""]
    return markdown_table(rows, ["name", "value"])


def step_summary(command: str, *, ok: bool, outputs: Mapping[str, object] | None = None,
                 tables: Mapping[str, Sequence[Mapping[str, object]]] | None = None,
                 notes: Sequence[str] = ()) -> str:
    """The job-summary Markdown of one command: a heading, its outputs, then named tables."""
    parts = [f"### `pipeline {command}`: {'✅ ok' if ok else '❌ failed'}\n"]
    if outputs and (table := key_value_table(outputs)):
        parts.append(table)
    parts += [f"- {redact(note)}\n" for note in notes]
    for title, rows in (tables or {}).items():
        if rows:
            parts.append(f"#### {title}\n\n{markdown_table(rows)}")
    return "\n".join(parts) + "\n"


def _append(variable: str, chunk: str, environ: Mapping[str, str]) -> Path | None:
    target = environ.get(variable)
    if not target:
        return None
    path = Path(target)
    try:
        with open(path, "a", encoding="utf-8", newline="") as fh:
            fh.write(chunk)
    except OSError as exc:
        raise PipelineError(f"cannot append to ${variable} ({path}): {exc.strerror}",
                            stage="actions", hint="the runner sets this file; outside GitHub "
                            f"Actions unset {variable}") from exc
    return path


def write_outputs(outputs: Mapping[str, object], *,
                  environ: Mapping[str, str] = os.environ) -> Path | None:
    """Append ``outputs`` to ``$GITHUB_OUTPUT``; returns the file, or None when not in Actions."""
    return _append("GITHUB_OUTPUT", format_outputs(outputs), environ) if outputs else None


def write_summary(markdown: str, *, environ: Mapping[str, str] = os.environ) -> Path | None:
    """Append ``markdown`` to ``$GITHUB_STEP_SUMMARY``; returns the file, or None."""
    return _append("GITHUB_STEP_SUMMARY", markdown, environ) if markdown else None


def annotate_error(title: str, message: str, *,
                   environ: Mapping[str, str] = os.environ) -> str | None:
    """Print an ``::error title=...::message`` workflow command (an annotation on the run's page)
    when running in GitHub Actions; returns the line, or None elsewhere.

    GitHub's toolkit escapes ``%``, CR and LF in the message, and also ``:`` and ``,`` in the
    title (its ``key=value`` list), or the annotation is cut short.
    """
    if environ.get("GITHUB_ACTIONS") != "true":
        return None

    def escape(value: str) -> str:
        return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")

    title = escape(redact(title)).replace(":", "%3A").replace(",", "%2C")
    line = f"::error title={title}::{escape(redact(message))}"
    print(line, flush=True)
    return line


def report_step(command: str, *, ok: bool, outputs: Mapping[str, object] | None = None,
                tables: Mapping[str, Sequence[Mapping[str, object]]] | None = None,
                notes: Sequence[str] = (), environ: Mapping[str, str] = os.environ) -> None:
    """What the CLI calls after every command: outputs (plus ``ok``) and the job summary."""
    write_outputs({**(outputs or {}), "ok": ok}, environ=environ)
    write_summary(step_summary(command, ok=ok, outputs=outputs, tables=tables, notes=notes),
                  environ=environ)


def show(result: Any) -> int:
    """Print a stage's result (:class:`pipeline.orchestrate.StageResult`) and write its step
    outputs and job summary; return its exit code. The CLI and the demo both show stages so."""
    if result.text:
        print(result.text, flush=True)
    report_step(result.name, ok=result.ok, outputs=result.outputs, tables=result.tables,
                notes=result.notes)
    return 0 if result.ok else 1
