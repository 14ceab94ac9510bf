#!/usr/bin/env python3
"""Screenshot a ``bitvert run`` HTML report in headless Chromium and check that every plot is visible.

Usage::

    python scripts/screenshot_report.py REPORT_DIR_OR_HTML [--out-dir DIR] [--chromium PATH]

Two Chromium runs: the report is loaded in an iframe of a throw-away harness page whose script reads
back, for every figure, whether its image decoded and where it is laid out (``--dump-dom``); then the
whole page is screenshot into ``page.png``. A figure counts as visible when its image decoded, it is laid
out at a real size inside the screenshot and its region of the screenshot is not blank (at least
``--min-ink`` of the pixels differ from the white page). Prints JSON lines and exits with status 1 when a
figure is not visible, 2 when Chromium is missing (``apt-get install -y chromium``).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium(explicit: str | None = None) -> str | None:
    """Path of a Chromium/Chrome executable, or ``None``."""
    if explicit:
        return explicit if Path(explicit).exists() or shutil.which(explicit) else None
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


_HARNESS = """<!DOCTYPE html><html><body><pre id="out">pending</pre>
<iframe id="f" src="{url}" style="width:{width}px;height:4000px;border:0"></iframe>
<script>
document.getElementById("f").addEventListener("load", function () {{
  var d = document.getElementById("f").contentDocument;
  var figs = Array.prototype.map.call(d.querySelectorAll("figure img"), function (img) {{
    var r = img.getBoundingClientRect();
    return {{id: img.parentElement.id, complete: img.complete, natural_width: img.naturalWidth,
             natural_height: img.naturalHeight, top: r.top, left: r.left, width: r.width, height: r.height}};
  }});
  document.getElementById("out").textContent =
    "RESULT" + JSON.stringify({{page_height: d.documentElement.scrollHeight, figures: figs}}) + "END";
}});
</script></body></html>
"""


def _chromium_cmd(chromium: str, profile: str, width: int, height: int) -> list[str]:
    return [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--disable-dev-shm-usage",
            "--no-first-run", f"--user-data-dir={profile}", "--force-device-scale-factor=1",
            f"--window-size={width},{height}", "--virtual-time-budget=5000"]


def inspect_figures(chromium: str, page: Path, width: int = 1280, timeout_s: float = 90.0) -> dict:
    """Load ``page`` in an iframe of a throw-away harness page and read back, for every figure image,
    whether it decoded (``complete``, natural size) and where it is laid out (CSS pixels)."""
    with tempfile.TemporaryDirectory(prefix="bitvert-chromium-") as tmp:
        harness = Path(tmp) / "harness.html"
        harness.write_text(_HARNESS.format(url=page.resolve().as_uri(), width=width), encoding="utf-8")
        cmd = _chromium_cmd(chromium, str(Path(tmp) / "profile"), width, 1000) + [
            "--allow-file-access-from-files", "--dump-dom", harness.as_uri()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    m = re.search(r"RESULT(.*?)END", proc.stdout, re.DOTALL)
    if proc.returncode != 0 or m is None:
        raise RuntimeError(f"chromium could not inspect {page} ({proc.returncode}): {proc.stderr.strip()[-800:]}")
    import html as _html

    return json.loads(_html.unescape(m.group(1)))


def screenshot(chromium: str, page: Path, out: Path, width: int = 1280, height: int = 1000,
               timeout_s: float = 90.0) -> None:
    """Headless Chromium screenshot of ``page`` (a window of ``width`` x ``height`` CSS pixels) into ``out``."""
    with tempfile.TemporaryDirectory(prefix="bitvert-chromium-") as profile:
        cmd = _chromium_cmd(chromium, profile, width, height) + [f"--screenshot={out}", page.resolve().as_uri()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"chromium failed ({proc.returncode}): {proc.stderr.strip()[-800:]}")


def ink_fraction(png: Path, box: tuple[int, int, int, int] | None = None) -> float:
    """Fraction of pixels of ``png`` (inside ``box`` = left, top, width, height) that are not near-white."""
    import matplotlib.image as mpimg

    img = mpimg.imread(str(png))[..., :3]
    if box is not None:
        left, top, w, h = box
        img = img[max(top, 0):top + h, max(left, 0):left + w]
    if img.size == 0:
        return 0.0
    return float((img.min(axis=2) < 0.9).mean())


def check_report(page: Path, out_dir: Path, chromium: str, min_ink: float = 0.02, width: int = 1280,
                 max_height: int = 16000) -> list[dict]:
    """Screenshot the whole page into ``out_dir/page.png`` and check every figure; one record per figure."""
    info = inspect_figures(chromium, page, width)
    height = min(int(info["page_height"]) + 20, max_height)
    shot = out_dir / "page.png"
    screenshot(chromium, page, shot, width, height)
    records = []
    for fig in info["figures"]:
        box = (int(fig["left"]), int(fig["top"]), int(fig["width"]), int(fig["height"]))
        inside = fig["top"] + fig["height"] <= height
        ink = ink_fraction(shot, box) if inside else 0.0
        decoded = bool(fig["complete"]) and fig["natural_width"] > 0 and fig["natural_height"] > 0
        records.append({
            "figure": fig["id"].removeprefix("fig-"), "decoded": decoded, "box_css_px": list(box),
            "in_screenshot": inside, "ink": round(ink, 4),
            "visible": decoded and inside and fig["width"] > 50 and fig["height"] > 50 and ink >= min_ink,
        })
    return records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="report folder or report.html")
    parser.add_argument("--out-dir", type=Path, default=None, help="where page.png goes (default: REPORT/screenshots)")
    parser.add_argument("--chromium", default=None, help="Chromium executable (default: found on PATH)")
    parser.add_argument("--min-ink", type=float, default=0.02,
                        help="minimum fraction of non-white pixels for a figure to count as visible")
    args = parser.parse_args(argv)
    page = args.report / "report.html" if args.report.is_dir() else args.report
    if not page.is_file():
        print(f"error: {page} does not exist; pass a report folder written by `bitvert run`", file=sys.stderr)
        return 2
    chromium = find_chromium(args.chromium)
    if chromium is None:
        print("error: Chromium is not installed; run `apt-get install -y chromium` (Debian) or pass --chromium",
              file=sys.stderr)
        return 2
    out_dir = args.out_dir or page.parent / "screenshots"
    out_dir.mkdir(parents=True, exist_ok=True)
    records = check_report(page, out_dir, chromium, args.min_ink)
    print(json.dumps({"screenshot": str(out_dir / "page.png"), "figures": len(records)}))
    for r in records:
        print(json.dumps(r))
    failed = [r["figure"] for r in records if not r["visible"]]
    if not records:
        print(f"error: {page} has no figure", file=sys.stderr)
        return 1
    if failed:
        print(f"error: figure(s) not visible: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
