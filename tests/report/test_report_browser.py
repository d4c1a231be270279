"""Open a generated report in real headless Chromium (Debian's package, driven by playwright).

No browser download ever happens here: playwright launches /usr/bin/chromium (``make test`` installs
it through the Makefile's ``browser`` target). Without a browser this test FAILS, saying how to
install one; it never skips.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from profiler.report import render_run

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]


def _chromium() -> str:
    for cand in ("/usr/bin/chromium", shutil.which("chromium") or "", shutil.which("chromium-browser") or ""):
        if cand and Path(cand).exists():
            return cand
    pytest.fail("no Chromium found: install it with `make browser` or `apt-get install -y chromium` "
                "(the browser test never skips)", pytrace=False)


@pytest.mark.browser
@pytest.mark.parametrize("run_fixture", ["synthetic_run", "layer_run"])
def test_report_renders_in_chromium(run_fixture, request, tmp_path):
    synthetic_run = request.getfixturevalue(run_fixture)
    exe = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("python package playwright is missing: pip install -e '.[dev]'", pytrace=False)
    html = render_run(synthetic_run, out=tmp_path / "report.html")
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: errors.append(f"network request: {r.url}")
                    if not r.url.startswith(("file:", "data:", "about:")) else None)
            page.goto(html.as_uri())
            page.wait_for_load_state("load")
            figures = page.query_selector_all("figure.figure svg")
            assert len(figures) >= 5
            for fig in figures:
                fig.scroll_into_view_if_needed()
                box = fig.bounding_box()
                assert box is not None and box["width"] > 200 and box["height"] > 150, box
                assert fig.is_visible()
            assert "Summary" in page.inner_text("#summary h2")
            if run_fixture == "layer_run":        # the SER section is laid out and readable
                box = page.locator("#ser").bounding_box()
                assert box is not None and box["height"] > 300
                assert "Utterance replay" in page.inner_text("#ser")
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
        finally:
            browser.close()
    assert errors == []
