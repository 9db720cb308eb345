"""``pipeline status``: what the state file says, in words (and the same facts as JSON).

Why a module: ``status`` is how an operator learns whether yesterday's run really finished, so it
must not round anything up to "published": a version whose notifications failed says so, a
publish that stopped half-way says which destination, which step and how to finish it, and
records waiting in the plan or failing are listed with their reasons. :func:`status_info` gathers
the facts as plain data (the ``--json`` output); :func:`status_text` renders them.
"""

from __future__ import annotations

from typing import Any

from pipeline.state import State

REASON_WIDTH = 90


def status_info(state: State) -> dict[str, Any]:
    """The facts ``status`` shows, as plain data (also its ``--json`` output)."""
    failed_notes = [
        {"version": version, "channel": channel, "attempts": entry.get("attempts", 0),
         "error": entry.get("error") or ""}
        for version, channels in sorted(state.notifications.items())
        for channel, entry in sorted(channels.items()) if entry.get("status") == "failed"]
    return {
        "cursor": state.cursor,
        "counts": state.counts(),
        "pending": len(state.pending),
        "pending_records": [
            {"id": rid, "action": p.get("action", ""), "reason": p.get("reason", ""),
             "attempts": p.get("attempts", 0), "planned_at": p.get("planned_at", "")}
            for rid, p in sorted(state.pending.items())],
        "failed": [{"id": rid, "attempts": r.get("attempts", 0), "reason": r.get("reason", "")}
                   for rid, r in sorted(state.failed().items())],
        "versions": [_version_info(v, state.notifications.get(str(v["version"]), {}))
                     for v in state.versions],
        "notifications": state.notifications,
        "failed_notifications": failed_notes,
        "publishing": [{"destination": name, "version": entry.get("version"),
                        "steps": list(entry.get("steps", [])),
                        "last_step": (entry.get("steps") or [None])[-1]}
                       for name, entry in sorted(state.journal.items())],
        "destinations": state.destinations,
        "journal": state.journal,
        "last_run": state.last_run,
    }


def _version_info(entry: dict[str, Any], notes: dict[str, Any]) -> dict[str, Any]:
    sent = sum(1 for n in notes.values() if n.get("status") == "sent")
    failed = sum(1 for n in notes.values() if n.get("status") == "failed")
    return {"version": entry["version"], "created": entry.get("created", ""),
            "records": entry.get("counts", {}).get("records", ""),
            "published": ", ".join(sorted(entry.get("published", {}))) or "-",
            "notifications_sent": sent, "notifications_failed": failed}


def _table(rows: list[tuple[Any, ...]], header: tuple[str, ...]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*map(str, r)).rstrip() for r in rows]
    return "\n".join(lines)


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= REASON_WIDTH else text[:REASON_WIDTH - 1] + "…"


def status_text(info: dict[str, Any], *, state_path: str, command: str = "pipeline") -> str:
    """``status`` for people: counts in words, then one section per thing needing attention.

    ``command`` is how the user invokes the pipeline (with their global options), so the advice
    can be pasted as it is.
    """
    c = info["counts"]
    out = [f"state:   {state_path}",
           f"cursor:  {info['cursor'] or '(none: the first run starts at source.since)'}",
           f"records: {c['done']} done, {c['failed']} failed, {c['skipped']} skipped, "
           f"{info['pending']} pending"]
    if info["pending_records"]:
        out += ["", f"pending records (planned by detect, not processed yet; "
                    f"`{command} process` does them):",
                _table([(p["id"], p["action"], _short(p["reason"]))
                        for p in info["pending_records"]], ("record", "action", "reason"))]
    if info["failed"]:
        out += ["", "failed records (retried by later runs up to source.retry_limit, or when "
                    "the record changes):",
                _table([(f["id"], f["attempts"], _short(f["reason"])) for f in info["failed"]],
                       ("record", "attempts", "reason"))]
    if info["versions"]:
        rows = []
        for v in info["versions"]:
            notes = f"{v['notifications_sent']} sent"
            if v["notifications_failed"]:
                notes += f", {v['notifications_failed']} FAILED"
            rows.append((v["version"], v["created"], v["records"], v["published"], notes))
        out += ["", "versions:", _table(rows, ("version", "created", "records", "published to",
                                               "notifications"))]
    if info["failed_notifications"]:
        out += ["", f"failed notifications (`{command} notify` retries them):",
                _table([(n["version"], n["channel"], n["attempts"], _short(n["error"]))
                        for n in info["failed_notifications"]],
                       ("version", "channel", "attempts", "error"))]
    for p in info["publishing"]:
        done = ", ".join(p["steps"]) or "none yet"
        out += ["", f"publishing in progress: version {p['version']} to {p['destination']}; "
                    f"steps done: {done}. `{command} publish` finishes this same version "
                    "(it never creates a second one)"]
    if info["destinations"]:
        out += ["", "destinations:"]
        for name, ids in sorted(info["destinations"].items()):
            out.append(f"  {name}: " + ", ".join(f"{k}={v}" for k, v in sorted(ids.items())
                                                 if not isinstance(v, dict)))
    return "\n".join(out)
