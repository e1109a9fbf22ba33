"""Screenshot the evaluation report in headless Chromium and check what a reader sees first.

    .venv/bin/python scripts/report_screenshot.py [results/eval/report.html] [--out report.png]

Checks, in a real browser layout at the given window size: the page is at most
--max-mb; the summary and the table of contents are on the first screen; the
gallery grid shows several cards per row. Writes the screenshot (default:
report_screenshot.png beside the report) for a human to look at. Needs the
`chromium` package (Debian: apt-get install -y chromium).
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
# Runs in the page after layout; the measurements land in <body data-*> for --dump-dom.
PROBE = """<script>addEventListener("load", () => {
  const top = s => {
    const e = document.querySelector(s);
    return e ? Math.round(e.getBoundingClientRect().bottom) : -1;
  };
  const grid = document.querySelector(".gallery");
  document.body.dataset.columns = grid ? getComputedStyle(grid).gridTemplateColumns.split(" ").length : 0;
  document.body.dataset.summaryBottom = top(".summary");
  document.body.dataset.tocBottom = top("nav.toc");
});</script>"""


def chromium() -> str:
    for name in BROWSERS:
        if shutil.which(name):
            return name
    sys.exit("no headless Chromium found (tried: " + ", ".join(BROWSERS) + "); on Debian: apt-get install -y chromium")


def run(browser: str, *args: str) -> str:
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("report", nargs="?", default="results/eval/report.html", help="the report to check")
    p.add_argument("--out", help="screenshot PNG (default: report_screenshot.png beside the report)")
    p.add_argument("--width", type=int, default=1400, help="window width in pixels")
    p.add_argument("--height", type=int, default=3000, help="window height in pixels (the screenshot's)")
    p.add_argument("--max-mb", type=float, default=5.0, help="largest acceptable report size")
    a = p.parse_args(argv)
    report = Path(a.report).resolve()
    out = Path(a.out) if a.out else report.with_name("report_screenshot.png")
    browser = chromium()
    size = report.stat().st_size / 1e6
    window = f"--window-size={a.width},{a.height}"
    run(browser, f"--screenshot={out.resolve()}", window, report.as_uri())
    # the probe needs the page beside the report (errors.csv links stay valid)
    with tempfile.NamedTemporaryFile("w", suffix=".html", dir=report.parent, delete=False) as f:
        f.write(report.read_text().replace("</body>", PROBE + "</body>", 1))
    try:
        dom = run(browser, "--dump-dom", "--virtual-time-budget=5000", window, Path(f.name).as_uri())
    finally:
        Path(f.name).unlink()
    found = dict(re.findall(r'data-([a-z-]+)="(-?\d+)"', dom.split("<body", 1)[1].split(">", 1)[0]))
    columns, summary, toc = (int(found.get(k, -1)) for k in ("columns", "summary-bottom", "toc-bottom"))
    print(f"{report}: {size:.2f} MB; screenshot {out} ({a.width} x {a.height})")
    print(f"summary ends at {summary} px, contents at {toc} px; gallery: {columns} cards per row")
    problems = []
    if size > a.max_mb:
        problems.append(f"report is {size:.2f} MB > {a.max_mb} MB")
    if not 0 < summary < toc <= 1000:
        problems.append("the summary and the table of contents are not both on the first screen")
    if columns < 3 and "class=\"gallery\"" in dom:
        problems.append(f"the gallery shows {columns} cards per row at {a.width} px")
    for problem in problems:
        print("PROBLEM:", problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
