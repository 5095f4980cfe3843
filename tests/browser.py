"""Load a page in a real headless browser (Debian's chromium; scripts/setup.sh installs it where
apt is available) and read back the DOM its scripts built and the console messages they
logged; tests that need it skip with the reason when chromium is missing."""
from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium not found (apt-get install chromium; scripts/setup.sh "
                             "does it where apt is available)")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0"]


def load_page(path: Path, fragment: str = "") -> tuple[str, list[str]]:
    """(the DOM after the page's scripts ran, its console messages) of a local file."""
    url = Path(path).resolve().as_uri() + (f"#{fragment}" if fragment else "")
    proc = subprocess.run([CHROMIUM, *FLAGS, "--dump-dom", url], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines() if re.search(r":CONSOLE[:(]", line)]
    return proc.stdout, console


def screenshot(path: Path, png: Path, fragment: str = "", size: str = "1200,1000") -> None:
    """A PNG of the page as chromium draws it in a window of `size` pixels."""
    url = Path(path).resolve().as_uri() + (f"#{fragment}" if fragment else "")
    proc = subprocess.run([CHROMIUM, *FLAGS, f"--window-size={size}",
                           f"--screenshot={Path(png).resolve()}", url],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and Path(png).exists(), proc.stderr[-2000:]


class Responses(HTMLParser):
    """The inspector's response boxes in a dumped DOM: per div.resp its attributes and, per
    table row tr.line, its cells as (class, text, style)."""

    def __init__(self, dom: str):
        super().__init__()
        self.boxes: list[dict] = []
        self._cell: list | None = None
        self.count_text = ""
        self._in_count = False
        self.feed(dom)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "div" and a.get("class") == "resp":
            self.boxes.append({"attrs": a, "rows": []})
        elif tag == "tr" and a.get("class") == "line":
            self.boxes[-1]["rows"].append([])
        elif tag == "td" and self.boxes and self.boxes[-1]["rows"]:
            self._cell = [a.get("class", ""), "", a.get("style", "")]
            self.boxes[-1]["rows"][-1].append(self._cell)
        elif tag == "span" and a.get("id") == "count":
            self._in_count = True

    def handle_endtag(self, tag):
        if tag == "td":
            self._cell = None
        if tag == "span":
            self._in_count = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[1] += data
        if self._in_count:
            self.count_text += data
