"""Screenshot the report in headless Chromium at several widths and check what a reader sees.

    .venv/bin/python scripts/report_screenshot.py [results/eval/report.html] [--widths 1000 1400 1920] [--out-dir DIR]

Checks, in a real browser layout at each window width: the page is at most --max-mb; the summary
and the table of contents are on the first screen; no element is wider than its container (tables
may scroll inside their own box); the mosaics are visible, do not overlap one another, and every
chip id sits inside its mosaic; the galleries show several cards per row. Writes two screenshots per
width for a human to look at: the top of the page (report_<width>.png) and the groups section
(report_<width>_groups.png, that section alone). Needs the `chromium` package (Debian: apt-get install -y chromium).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run")
# Runs in the page after layout; the measurements land in <body data-*> for --dump-dom.
PROBE = """<script>addEventListener("load", () => {
  const rect = e => e.getBoundingClientRect();
  const bottom = s => { const e = document.querySelector(s); return e ? Math.round(rect(e).bottom) : -1; };
  const page = document.documentElement.clientWidth;
  let wider = [];
  for (const e of document.body.querySelectorAll("*")) {
    if (e.closest(".table-wrap") || e.closest("details:not([open])") || e.closest("head")) continue;
    const r = rect(e), p = e.parentElement ? rect(e.parentElement) : null;
    if (r.width === 0) continue;
    if (r.right > page + 1 || (p && p.width > 0 && r.width > p.width + 1 && e.parentElement.tagName !== "BODY"
        && getComputedStyle(e).position !== "absolute"))
      wider.push(e.tagName.toLowerCase() + (e.className ? "." + e.className : ""));
  }
  const figs = [...document.querySelectorAll(".mosaics figure")].map(rect);
  let overlaps = 0;
  for (let i = 0; i < figs.length; i++) for (let j = i + 1; j < figs.length; j++) {
    const a = figs[i], b = figs[j];
    if (Math.min(a.right, b.right) - Math.max(a.left, b.left) > 1 && Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top) > 1) overlaps++;
  }
  const shown = [...document.querySelectorAll(".mosaic img")].filter(i => i.complete && i.naturalWidth > 0
      && rect(i).width >= Math.min(i.naturalWidth, 200) - 1);  // a small group is drawn at its own size
  let outside = 0;
  for (const s of document.querySelectorAll(".chip-id")) {
    const r = rect(s), st = rect(s.closest(".stage"));
    if (r.left < st.left - 1 || r.top < st.top - 1 || r.left > st.right || r.top > st.bottom) outside++;
  }
  const grid = document.querySelector(".gallery");
  const d = document.body.dataset;
  d.columns = grid ? getComputedStyle(grid).gridTemplateColumns.split(" ").length : 0;
  d.summaryBottom = bottom(".summary"); d.tocBottom = bottom("nav.toc");
  d.wider = wider.length; d.widerNames = [...new Set(wider)].slice(0, 8).join(" ");
  d.mosaics = document.querySelectorAll(".mosaic").length; d.mosaicsShown = shown.length;
  d.mosaicOverlaps = overlaps; d.chipIds = document.querySelectorAll(".chip-id").length; d.idsOutside = outside;
  d.mosaicWidth = figs.length ? Math.round(Math.min(...figs.map(f => f.width))) : 0;
});</script>"""


def chromium() -> str:
    for name in BROWSERS:
        if shutil.which(name):
            return name
    sys.exit("no headless Chromium found (tried: " + ", ".join(BROWSERS) + "); on Debian: apt-get install -y chromium")


def run(browser: str, *args: str) -> str:
    with tempfile.TemporaryDirectory() as profile:
        cmd = [browser, *FLAGS, f"--user-data-dir={profile}", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=True).stdout


def with_extra(browser: str, report: Path, extra: str, *args: str) -> str:
    """Run the browser on a copy of the page with `extra` before </body>, beside the report (links stay valid)."""
    with tempfile.NamedTemporaryFile("w", suffix=".html", dir=report.parent, delete=False) as f:
        f.write(report.read_text().replace("</body>", extra + "</body>", 1))
    try:
        return run(browser, *args, Path(f.name).as_uri())
    finally:
        Path(f.name).unlink()


def measure(browser: str, report: Path, width: int, height: int) -> dict:
    dom = with_extra(browser, report, PROBE, "--dump-dom", "--virtual-time-budget=5000", f"--window-size={width},{height}")
    attrs = dom.split("<body", 1)[1].split(">", 1)[0]
    return {k: (int(v) if re.fullmatch(r"-?\d+", v) else v) for k, v in re.findall(r'data-([a-z-]+)="([^"]*)"', attrs)}


def check(report: Path, out_dir: Path, width: int, height: int, max_mb: float, browser: str) -> list[str]:
    top, groups = out_dir / f"report_{width}.png", out_dir / f"report_{width}_groups.png"
    window = f"--window-size={width},{height}"
    run(browser, f"--screenshot={top.resolve()}", window, report.as_uri())
    # the groups section alone at the top of the page (a jump to its anchor is not painted in time)
    with_extra(browser, report, "<style>body > *:not(#groups){display:none}</style>", f"--screenshot={groups.resolve()}",
               window)
    m = measure(browser, report, width, height)
    print(f"{width} px: summary ends at {m['summary-bottom']} px, contents at {m['toc-bottom']} px; gallery "
          f"{m['columns']} cards per row; {m['mosaics-shown']}/{m['mosaics']} mosaics shown (narrowest "
          f"{m['mosaic-width']} px), {m['mosaic-overlaps']} overlapping; {m['chip-ids']} chip ids, "
          f"{m['ids-outside']} outside their mosaic; {m['wider']} elements wider than their container "
          f"{m.get('wider-names', '')}; screenshots {top}, {groups}")
    problems = []
    if report.stat().st_size / 1e6 > max_mb:
        problems.append(f"report is {report.stat().st_size / 1e6:.2f} MB > {max_mb} MB")
    if not 0 < m["summary-bottom"] <= height:
        problems.append(f"{width} px: the summary is not on the first screen")
    if m["wider"]:
        problems.append(f"{width} px: {m['wider']} elements wider than their container: {m.get('wider-names')}")
    if m["mosaics-shown"] < m["mosaics"] or m["mosaic-overlaps"] or m["ids-outside"]:
        problems.append(f"{width} px: mosaics hidden, overlapping or with ids outside them")
    if m["columns"] < 3 and 'class="gallery"' in report.read_text():
        problems.append(f"{width} px: the gallery shows {m['columns']} cards per row")
    return problems


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("report", nargs="?", default="results/eval/report.html", help="the report to check")
    p.add_argument("--out-dir", help="folder for the screenshots (default: beside the report)")
    p.add_argument("--widths", type=int, nargs="+", default=[1000, 1400, 1920], help="window widths in pixels")
    p.add_argument("--height", type=int, default=1100, help="window height in pixels (the first screen)")
    p.add_argument("--max-mb", type=float, default=5.0, help="largest acceptable report size")
    a = p.parse_args(argv)
    report = Path(a.report).resolve()
    out_dir = Path(a.out_dir) if a.out_dir else report.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    browser = chromium()
    print(f"{report}: {report.stat().st_size / 1e6:.2f} MB")
    problems = [x for w in a.widths for x in check(report, out_dir, w, a.height, a.max_mb, browser)]
    for problem in problems:
        print("PROBLEM:", problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
