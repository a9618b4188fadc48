"""A picture of a run: `fleetrel report JOURNAL --format html -o run.html`.

    write_html(Path("org.journal.jsonl"), open("run.html", "w"))

One self-contained page (inline CSS and SVG drawn here: no script, no font, no CDN, no
network), from the journal alone:

- the timeline: calls answered per second, admitted and throttled (stacked bars), the
  rate the controller admitted (a step line, summed over targets), wave starts, resumes
  and gate decisions (dashed lines);
- progress per target (succeeded, skipped, failed, unfinished);
- failures by error code;
- devices per version (when the run read the fleet: its guard or a `devices:` selector),
  the versions it deprecated marked;
- the step table (the same rows as `--format csv`; past `MAX_ROWS`, failed and unfinished
  steps first and the rest counted).

Every chart is an `<svg>` with an id (`timeline`, `targets`, `failures`) and its marks
carry classes (`admitted`, `throttled`, `rate`, `wave`, ...), so a test can find them.
"""
from __future__ import annotations

import math
from datetime import datetime
from html import escape
from pathlib import Path
from typing import IO, Any, Iterable

from fleetrel.completion import COLUMNS, read_rows, totals_of
from fleetrel.events import SESSION_STARTS, TERMINAL, Event
from fleetrel.progress import format_seconds
from fleetrel.replay import JournalLines, collector_paused, open_journal

MAX_ROWS = 5000
MAX_BARS = 600  # timeline buckets at most: a two-hour run gets 12-second bars
COLOURS = {"succeeded": "#2e7d32", "skipped": "#90a4ae", "failed": "#c62828", "unfinished": "#eeeeee",
           "admitted": "#66bb6a", "throttled": "#ffa726", "rate": "#1565c0", "wave": "#555555",
           "devices": "#78909c", "deprecated": "#c62828"}
_TERMINAL = frozenset(str(e) for e in TERMINAL)
_SESSION_STARTS = frozenset(str(e) for e in SESSION_STARTS)


def _seconds(ts: str | None) -> float | None:
    if not ts:
        return None
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


class Timeline:
    """What the timeline shows, from one pass over the journal: answers by second, the
    controller's rate over time, and the marks (waves, resumes, gates)."""

    def __init__(self) -> None:
        self.start: float | None = None
        self.end = 0.0
        self.admitted: dict[int, int] = {}
        self.throttled: dict[int, int] = {}
        self.rates: list[tuple[float, str, float]] = []  # (t, target, rate)
        self.marks: list[tuple[float, str, str]] = []  # (t, kind, label)

    @classmethod
    def read(cls, path: Path) -> "Timeline":
        timeline = cls()
        with open_journal(path) as file, collector_paused():
            for record in JournalLines(path, file):
                timeline.add(record)
        return timeline

    def add(self, record: dict[str, Any]) -> None:
        at = _seconds(record.get("ts"))
        if at is None:
            return
        if self.start is None:
            self.start = at
        t = at - self.start
        self.end = max(self.end, t)
        event = record["event"]
        second = int(t)
        if event in _TERMINAL:
            if record.get("attempt"):
                self.admitted[second] = self.admitted.get(second, 0) + 1
        elif event == Event.ATTEMPT_FAILED:
            counts = self.throttled if record.get("throttled") else self.admitted
            counts[second] = counts.get(second, 0) + 1
        elif event == Event.RATE_CHANGED:
            self.rates.append((t, record.get("target", ""), float(record["new"])))
        elif event in _SESSION_STARTS:
            if record.get("rate") is not None:
                for target in (record.get("identity") or {}) if isinstance(record.get("identity"), dict) and \
                        all(isinstance(v, dict) for v in record["identity"].values()) else ("",):
                    self.rates.append((t, target, float(record["rate"])))
            if event == Event.RUN_RESUMED:
                self.marks.append((t, "resume", "resumed"))
        elif event == Event.WAVE_STARTED:
            self.marks.append((t, "wave", f"wave {record.get('wave')}"))
        elif event == Event.WAVE_GATE:
            self.marks.append((t, "gate", f"{record.get('decision')} ({record.get('by')})"))

    def rate_steps(self) -> list[tuple[float, float]]:
        """(t, summed rate) at each change."""
        now: dict[str, float] = {}
        out: list[tuple[float, float]] = []
        for t, target, rate in self.rates:
            if target and "" in now:
                del now[""]  # per-target rates replace the session's overall one
            now[target] = rate
            out.append((t, sum(now.values())))
        return out


# -- SVG ---------------------------------------------------------------------------------

def _svg(id_: str, width: int, height: int, body: Iterable[str], title: str) -> str:
    return (f'<svg id="{id_}" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">'
            f"<title>{escape(title)}</title>{''.join(body)}</svg>")


def _nice(value: float) -> float:
    """A round number at or above `value` for an axis' top."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power


def timeline_svg(timeline: Timeline, *, width: int = 960, height: int = 280) -> str:
    left, right, top, bottom = 48, 16, 16, 36
    w, h = width - left - right, height - top - bottom
    duration = max(1.0, timeline.end)
    bucket = max(1, math.ceil(duration / MAX_BARS))  # seconds per bar
    bars = math.ceil((duration + 1) / bucket)
    admitted = [0.0] * bars
    throttled = [0.0] * bars
    for second, count in timeline.admitted.items():
        admitted[min(bars - 1, second // bucket)] += count / bucket
    for second, count in timeline.throttled.items():
        throttled[min(bars - 1, second // bucket)] += count / bucket
    rates = timeline.rate_steps()
    top_value = _nice(max([a + b for a, b in zip(admitted, throttled)] + [r for _, r in rates] + [1.0]))
    x_of = lambda t: left + w * t / (bars * bucket)  # noqa: E731
    y_of = lambda v: top + h - h * v / top_value  # noqa: E731
    bar_w = max(0.5, w / bars - (1 if w / bars > 3 else 0))
    body = [f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="#fafafa" stroke="#ddd"/>']
    for i in range(5):  # y axis: calls per second
        value = top_value * i / 4
        y = y_of(value)
        body.append(f'<line x1="{left}" x2="{left + w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e0e0e0"/>'
                    f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="axis">{value:g}</text>')
    span = bars * bucket
    step = _nice(span / 6)
    for i in range(int(span // step) + 1):  # x axis: time since the run started, at round seconds
        t = i * step
        body.append(f'<text x="{x_of(t):.1f}" y="{top + h + 16}" text-anchor="middle" class="axis">'
                    f'{escape(format_seconds(t))}</text>')
    body.append(f'<text x="{left}" y="{height - 4}" class="axis">calls/s (bars of {bucket} s)</text>')
    for i in range(bars):
        x = x_of(i * bucket)
        if admitted[i]:
            body.append(f'<rect class="admitted" x="{x:.1f}" y="{y_of(admitted[i]):.1f}" width="{bar_w:.1f}" '
                        f'height="{h * admitted[i] / top_value:.1f}" fill="{COLOURS["admitted"]}"/>')
        if throttled[i]:
            y = y_of(admitted[i] + throttled[i])
            body.append(f'<rect class="throttled" x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" '
                        f'height="{h * throttled[i] / top_value:.1f}" fill="{COLOURS["throttled"]}"/>')
    if rates:
        points = []
        for (t, rate), following in zip(rates, rates[1:] + [(timeline.end, rates[-1][1])]):
            points += [f"{x_of(t):.1f},{y_of(rate):.1f}", f"{x_of(following[0]):.1f},{y_of(rate):.1f}"]
        body.append(f'<polyline class="rate" fill="none" stroke="{COLOURS["rate"]}" stroke-width="2" '
                    f'points="{" ".join(points)}"/>')
    for i, (t, kind, label) in enumerate(timeline.marks):
        x = x_of(t)
        y = top + 12 + 13 * (i % 3)  # marks close together (a gate, then its wave) on lines of their own
        body.append(f'<line class="{kind}" x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + h}" '
                    f'stroke="{COLOURS["wave"]}" stroke-dasharray="4 3"/>'
                    f'<text x="{x + 3:.1f}" y="{y}" class="mark">{escape(label)}</text>')
    legend = [("admitted", "answered"), ("throttled", "throttled"), ("rate", "controller's rate")]
    for i, (kind, label) in enumerate(legend):
        x = left + w - 330 + i * 110
        body.append(f'<rect x="{x}" y="{height - 14}" width="10" height="10" fill="{COLOURS[kind]}"/>'
                    f'<text x="{x + 14}" y="{height - 5}" class="axis">{label}</text>')
    return _svg("timeline", width, height, body, "calls per second and the controller's rate over time")


def stacked_bars_svg(id_: str, rows: dict[str, dict[str, int]], kinds: tuple[str, ...], title: str,
                     *, width: int = 960) -> str:
    """One horizontal bar per row, split by `kinds` (rows: name -> counts)."""
    label_w, bar_h, gap = 220, 18, 6
    height = len(rows) * (bar_h + gap) + 30
    w = width - label_w - 80
    body = []
    for i, (name, counts) in enumerate(rows.items()):
        y = i * (bar_h + gap) + 4
        total = sum(counts.get(k, 0) for k in kinds) or 1
        x = float(label_w)
        body.append(f'<text x="{label_w - 8}" y="{y + 13}" text-anchor="end" class="label">{escape(name)}</text>')
        for kind in kinds:
            part = w * counts.get(kind, 0) / total
            if part > 0:
                body.append(f'<rect class="{kind}" x="{x:.1f}" y="{y}" width="{part:.1f}" height="{bar_h}" '
                            f'fill="{COLOURS.get(kind, "#c62828")}"><title>{escape(kind)}: {counts[kind]}</title></rect>')
            x += part
        done = total - counts.get("unfinished", 0)
        body.append(f'<text x="{label_w + w + 6}" y="{y + 13}" class="label">{done}/{total}</text>')
    y = len(rows) * (bar_h + gap) + 16
    for i, kind in enumerate(kinds):
        x = label_w + i * 120
        body.append(f'<rect x="{x}" y="{y}" width="10" height="10" fill="{COLOURS.get(kind, "#c62828")}"/>'
                    f'<text x="{x + 14}" y="{y + 9}" class="axis">{escape(kind)}</text>')
    return _svg(id_, width, height, body, title)


def failures_svg(by_code: dict[str, int], *, width: int = 960) -> str:
    label_w, bar_h, gap = 260, 18, 6
    top = max(by_code.values() or [1])
    w = width - label_w - 80
    body = []
    for i, (code, count) in enumerate(sorted(by_code.items(), key=lambda item: -item[1])):
        y = i * (bar_h + gap) + 4
        body.append(f'<text x="{label_w - 8}" y="{y + 13}" text-anchor="end" class="label">{escape(code)}</text>'
                    f'<rect class="failure" x="{label_w}" y="{y}" width="{max(1.0, w * count / top):.1f}" '
                    f'height="{bar_h}" fill="{COLOURS["failed"]}"/>'
                    f'<text x="{label_w + w * count / top + 6:.1f}" y="{y + 13}" class="label">{count}</text>')
    return _svg("failures", width, max(1, len(by_code)) * (bar_h + gap) + 8, body, "failed steps by error code")


def fleet_counts(path: Path) -> dict[str, dict[str, dict[str, int | None]]]:
    """{"target: package" (or package): {version: things}} the run saw: the guard's counts
    (`fleet_check`) and a `devices:` selector's (the frozen selection), the first session's."""
    seen: dict[str, dict[str, dict[str, int | None]]] = {}
    with open_journal(path) as file, collector_paused():
        for record in JournalLines(path, file):
            if record.get("event") not in _SESSION_STARTS:
                continue
            for found in record.get("selection") or ():
                for package in found.get("packages", ()):
                    if package.get("devices") is not None:
                        name = f"{found['target']}: {package['package']}" if found.get("target") else package["package"]
                        seen.setdefault(name, dict(package["devices"]))
            for found in (record.get("fleet_check") or {}).get("counts") or ():
                target, package = found.get("target"), found["package"]
                seen.setdefault(f"{target}: {package}" if target else package, dict(found["counts"]))
    return seen


def fleet_svg(name: str, counts: dict[str, int | None], deprecated: set[str], *, width: int = 960) -> str:
    """One bar per version, newest first: the things that reported it when the run started;
    the versions the run deprecated in their own colour."""
    from fleetrel.plan.selectors import sort_key

    label_w, bar_h, gap = 160, 14, 4
    versions = sorted(counts, key=sort_key, reverse=True)
    top = max([n for n in counts.values() if n] or [1])
    w = width - label_w - 80
    body = []
    for i, version in enumerate(versions):
        y = i * (bar_h + gap) + 4
        n = counts[version]
        kind = "deprecated" if version in deprecated else "devices"
        body.append(f'<text x="{label_w - 8}" y="{y + 11}" text-anchor="end" class="label">{escape(version)}</text>'
                    f'<rect class="{kind}" x="{label_w}" y="{y}" width="{w * (n or 0) / top:.1f}" height="{bar_h}" '
                    f'fill="{COLOURS[kind]}"><title>{escape(version)}: {"?" if n is None else n} things</title></rect>'
                    f'<text x="{label_w + w * (n or 0) / top + 6:.1f}" y="{y + 11}" class="label">'
                    f'{"?" if n is None else n}</text>')
    return _svg("fleet-" + "".join(c if c.isalnum() else "-" for c in name), width,
                max(1, len(versions)) * (bar_h + gap) + 8, body, f"{name}: things per version")


# -- the page ------------------------------------------------------------------------------

_CSS = """
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #212121; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 28px 0 8px; }
.facts { color: #555; } .facts b { color: #212121; }
svg text { font: 11px system-ui, sans-serif; fill: #424242; } svg text.mark { fill: #333; }
table { border-collapse: collapse; font-size: 12px; } th, td { border: 1px solid #e0e0e0; padding: 2px 6px; text-align: left; }
th { background: #f5f5f5; position: sticky; top: 0; } tr.failed td { background: #ffebee; }
tr.unfinished td { background: #fffde7; } .note { color: #777; }
"""


def write_html(path: Path, out: IO[str]) -> dict[str, Any]:
    """Write the page for the journal at `path` to `out`; return the run's totals."""
    header, rows, facts = read_rows(path)
    totals = totals_of(path, header, rows, facts)
    timeline = Timeline.read(path)
    cells = [row.cells() for row in rows.values()]
    per_target: dict[str, dict[str, int]] = {}
    by_code: dict[str, int] = {}
    for cell in cells:
        counts = per_target.setdefault(cell["target"] or header.get("plan") or "run", {})
        counts[cell["outcome"]] = counts.get(cell["outcome"], 0) + 1
        if cell["outcome"] == "failed":
            by_code[cell["code"] or "unknown"] = by_code.get(cell["code"] or "unknown", 0) + 1
    counts = totals["counts"]
    title = f"fleetrel run {totals['run_id']} of plan {totals['plan']}"
    out.write(f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
              f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
              f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>\n")
    out.write(f"<h1>{escape(str(totals['plan']))}: {escape(totals['status'])}</h1>\n")
    out.write(f"<p class=\"facts\">run <b>{escape(str(totals['run_id']))}</b> · {totals['steps']} steps · "
              f"succeeded <b>{counts['succeeded']}</b> · skipped <b>{counts['skipped']}</b> · "
              f"failed <b>{counts['failed']}</b> · unfinished <b>{counts['unfinished']}</b> · "
              f"calls {totals['attempts']} · throttled {totals['throttles']} · sessions {totals['sessions']} · "
              f"started {escape(str(totals['started']))} · "
              f"{'ended ' + escape(str(totals['ended'])) if totals['ended'] else 'not ended'} · "
              f"{escape(format_seconds(timeline.end))} from first record to last</p>\n")
    out.write("<h2>Timeline</h2>\n" + timeline_svg(timeline) + "\n")
    out.write("<h2>Progress per target</h2>\n"
              + stacked_bars_svg("targets", per_target, ("succeeded", "skipped", "failed", "unfinished"),
                                 "steps per target by outcome") + "\n")
    out.write("<h2>Failures by code</h2>\n"
              + (failures_svg(by_code) if by_code else '<p class="note" id="no-failures">No step failed.</p>') + "\n")
    fleet = fleet_counts(path)
    if fleet:  # what the devices ran when the run started (fleet indexing): the evidence of its choices
        deprecated = {(c["target"] or "", c["package"], c["version"]) for c in cells
                      if c["action"] == "DEPRECATE" and c["outcome"] in ("succeeded", "skipped")}
        out.write("<h2>Devices per version</h2>\n<p class=\"note\">Things reporting each version in the $package "
                  "shadow when the run started; red: deprecated by this run.</p>\n")
        for name, counts in fleet.items():
            target, _, package = name.rpartition(": ")
            out.write(fleet_svg(name, counts, {v for t, p, v in deprecated if t == target and p == package}) + "\n")
    out.write("<h2>Steps</h2>\n")
    shown = cells
    if len(cells) > MAX_ROWS:
        shown = ([c for c in cells if c["outcome"] in ("failed", "unfinished")]
                 + [c for c in cells if c["outcome"] not in ("failed", "unfinished")])[:MAX_ROWS]
        out.write(f'<p class="note">{len(cells) - MAX_ROWS} of {len(cells)} steps left out (failed and '
                  f"unfinished first): `fleetrel report --format csv` has them all.</p>\n")
    out.write('<table id="steps"><thead><tr>' + "".join(f"<th>{c}</th>" for c in COLUMNS) + "</tr></thead><tbody>\n")
    for cell in shown:
        out.write(f'<tr class="{escape(cell["outcome"])}">'
                  + "".join(f"<td>{escape('' if cell[c] is None else str(cell[c]))}</td>" for c in COLUMNS)
                  + "</tr>\n")
    out.write("</tbody></table>\n</body></html>\n")
    return totals


def html_command(journal_path: Path, output_path: Path | None, fail: Any) -> None:
    """`fleetrel report --format html`: to `output_path` (written beside it, then renamed) or stdout."""
    import sys

    from fleetrel.journal import JournalError

    try:
        if output_path is None:
            write_html(journal_path, sys.stdout)
            sys.stdout.flush()
            return
        partial = output_path.with_name(output_path.name + ".partial")
        try:
            with open(partial, "w", encoding="utf-8") as out:
                write_html(journal_path, out)
            partial.replace(output_path)
        finally:
            partial.unlink(missing_ok=True)
    except JournalError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"{output_path}: cannot write the report: {exc.strerror or exc}")
