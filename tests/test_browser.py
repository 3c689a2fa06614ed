"""The built book as a reader's browser sees it, offline: every chapter page listed in _toc.yml is opened in
headless Chromium from a local server, and checked for errors, rendered maths, loaded figures, its Colab link
and folded solutions. A full-page screenshot of each chapter lands in _build/screenshots/<stem>.png.

The book is built (strict: `jupyter-book build . -W -n --keep-going`) unless _build/html holds a clean build
newer than every source. In scripts/test.sh the build runs after nbval and takes the outputs of every chapter
nbval executed from $COURSE_EXECUTED_CACHE (see tests/executed_chapters.py); a test checks that it executed none
of those again.
"""
from __future__ import annotations

import functools
import http.server
import importlib.util
import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from course.config import repository
from course.dependencies import package_files
from course.myst import chapter_number

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
SCREENSHOTS = ROOT / "_build" / "screenshots"
# Debian's Chromium here; elsewhere (e.g. a GitHub runner) whichever Chromium or Chrome is on the PATH.
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> Path | None:
    """The browser to drive: $CHROMIUM if set, else the first Chromium/Chrome on the PATH."""
    if os.environ.get("CHROMIUM"):
        return Path(os.environ["CHROMIUM"])
    found = next((shutil.which(name) for name in CHROMIUM_NAMES if shutil.which(name)), None)
    return Path(found) if found else None


CHROMIUM = find_chromium()
BUILD = ["jupyter-book", "build", ".", "-W", "-n", "--keep-going"]
# What a build depends on: a change to any of these, or to a companion file a chapter can run (package_files: not
# the generated exercise_checks/), makes an existing _build/html stale. course/ is not among them: no chapter runs
# it, and a change there executes no chapter again (_ext/course_book.py).
SOURCES = ["chapters", "_config.yml", "_toc.yml", "intro.md", "_ext", "_static", "package-lock.json"]
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
COLAB_LINK = re.compile(r"^https://colab\.research\.google\.com/github/([^/]+)/([^/]+)/blob/([^/]+)/(.+)$")
# TeX that MathJax should have replaced: display or inline delimiters, environments, $...$ holding TeX.
RAW_TEX = re.compile(r"\$\$|\\\(|\\\)|\\\[|\\\]|\\begin\{|\$[^$\n]*[\\^_][^$\n]*\$")
PAGE_TIMEOUT_MS = 30_000
MATHJAX_TIMEOUT_MS = 15_000


def _extension():
    """The book's Sphinx extension, loaded from _ext/ for the name of its clean-build stamp."""
    spec = importlib.util.spec_from_file_location("course_book", ROOT / "_ext" / "course_book.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _toc_files(entry: object) -> Iterator[str]:
    """Every `file:` named anywhere in a _toc.yml structure, in order."""
    if isinstance(entry, dict):
        if "file" in entry:
            yield str(entry["file"])
        for value in entry.values():
            yield from _toc_files(value)
    elif isinstance(entry, list):
        for item in entry:
            yield from _toc_files(item)


def chapter_docnames() -> list[str]:
    """Docnames (chapters/NN_topic, no suffix) of the chapter pages listed in _toc.yml."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    return [name.removesuffix(".md") for name in _toc_files(toc) if name.startswith("chapters/")]


def _source_files() -> Iterator[Path]:
    """Every file the build depends on."""
    for name in SOURCES:
        path = ROOT / name
        yield from [path] if path.is_file() else path.rglob("*") if path.is_dir() else []
    yield from package_files(ROOT)


def _newest_source_mtime() -> float:
    """Modification time of the most recently changed build source."""
    # Byte code is rewritten by any import and says nothing about the book.
    return max((file.stat().st_mtime for file in _source_files()
                if file.is_file() and "__pycache__" not in file.parts), default=0.0)


def _clean_build_is_current(stamp: Path) -> bool:
    """True when _build/html holds a warning-free nitpicky build newer than every source."""
    if not stamp.is_file():
        return False
    record = json.loads(stamp.read_text(encoding="utf-8"))
    return record.get("warnings") == 0 and record.get("nitpicky") is True and (
        stamp.stat().st_mtime > _newest_source_mtime()
    )


@dataclass
class BookBuild:
    """The book in _build/html, and the build this test run made of it, if any."""

    html: Path
    seconds: float | None  # how long this run's build took; None when the existing build was current
    executions: dict  # per chapter the build read: executed (bool), method, seconds (the extension's record)


@pytest.fixture(scope="session")
def book_build() -> BookBuild:
    """A strict, clean build in _build/html: the existing one if current, else a fresh build."""
    extension = _extension()
    stamp = HTML / extension.CLEAN_BUILD_STAMP
    if _clean_build_is_current(stamp):
        return BookBuild(HTML, None, {})
    start = time.monotonic()
    run = subprocess.run(BUILD, cwd=ROOT, capture_output=True, text=True)
    seconds = time.monotonic() - start
    output = run.stdout + run.stderr
    # The warnings and errors first (the kernels' own start-up notices are noise), then how it ended.
    flagged = [line for line in output.splitlines()
               if re.search(r"WARNING|ERROR|Error", line) and "IPKernelApp" not in line]
    log = "\n".join(flagged[-40:]) + "\n...\n" + output[-3000:]
    assert run.returncode == 0, f"`{' '.join(BUILD)}` exited {run.returncode}:\n{log}"
    assert stamp.is_file(), f"the build exited 0 but the extension recorded no clean build:\n{log}"
    executions = json.loads((HTML / extension.EXECUTIONS_RECORD).read_text(encoding="utf-8"))
    return BookBuild(HTML, seconds, executions)


@pytest.fixture(scope="session")
def built_book(book_build: BookBuild) -> Path:
    """_build/html of a strict, clean build."""
    return book_build.html


@pytest.fixture(scope="session")
def server(built_book: Path) -> Iterator[str]:
    """Base URL of a threaded HTTP server on a free local port serving _build/html."""

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass  # the browser's own request log is what the tests read

    handler = functools.partial(QuietHandler, directory=str(built_book))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium, headless, driven by Playwright."""
    if CHROMIUM is None or not CHROMIUM.is_file():
        pytest.skip("Chromium not found (looked for $CHROMIUM and " + ", ".join(CHROMIUM_NAMES) + " on the PATH): "
                    "install it with `apt-get update && apt-get install -y chromium`")
    sync_api = pytest.importorskip("playwright.sync_api", reason="python playwright is not installed")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@dataclass
class ChapterVisit:
    """What a reader's browser met on one chapter page, gathered in one visit."""

    problems: list[str] = field(default_factory=list)  # console and page errors, failed or blocked requests
    mathjax_started: bool | None = None
    colab_hrefs: list[str] = field(default_factory=list)  # every link to Colab on the page
    colab_link: dict | None = None  # the a.colab-link: text, href, visible (None when there is none)
    colab_link_count: int = 0
    solutions: int = 0
    solution_bodies: int = 0
    open_before_click: list[int] = field(default_factory=list)  # 1-based solutions visible before any click
    first_opens_on_click: bool = False
    others_stay_folded: bool = False
    still_folded_after_clicks: int = 0
    math: dict = field(default_factory=dict)
    prose_without_code: str = ""
    article_text: str = ""
    images: list[dict] = field(default_factory=list)
    widgets: int = 0


def _settle(page, visit: ChapterVisit) -> None:
    """Wait for MathJax's typesetting, the fonts, every image and the network to be done."""
    if visit.mathjax_started is not False:  # once it has failed to start, waiting again tells nothing new
        try:
            page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise",
                                   timeout=MATHJAX_TIMEOUT_MS)
            page.evaluate("() => MathJax.startup.promise.then(() => true)")
            visit.mathjax_started = True
        except Exception as err:  # Playwright's TimeoutError: the page goes on to be checked without maths
            visit.mathjax_started = False
            visit.problems.append(f"MathJax never started (is _static/mathjax/tex-chtml.js served?): {err}"
                                  .splitlines()[0])
    page.evaluate("() => document.fonts.ready.then(() => true)")
    page.evaluate(
        """async () => {
            for (const img of document.images) {
                img.loading = 'eager';  // a lazy image below the fold would otherwise never load
                if (!img.complete) {
                    await new Promise(done => {
                        img.addEventListener('load', done, {once: true});
                        img.addEventListener('error', done, {once: true});
                    });
                }
            }
        }"""
    )
    page.wait_for_load_state("networkidle", timeout=PAGE_TIMEOUT_MS)


def _offline_page(browser, server: str, problems: list[str]):
    """A browser context and page that reach only the book's server; problems go to `problems`."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})

    def route(route_) -> None:
        # Anything not served by the book's own server would need the internet: block it and record it, so the
        # page is tested as a reader without a connection sees it, even where CI is online.
        if route_.request.url.startswith(server + "/"):
            route_.continue_()
        else:
            problems.append(f"request outside the book (blocked): {route_.request.url}")
            route_.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.on("console", lambda m: m.type == "error" and problems.append(f"console error: {m.text}"))
    page.on("pageerror", lambda err: problems.append(f"page error: {err}"))
    # ERR_ABORTED is the browser dropping a request itself (a redirect leaving the page, say); a missing file
    # shows up as its HTTP status and a request outside the book in the route above, so neither is lost.
    page.on("requestfailed", lambda r: r.failure != "net::ERR_ABORTED"
            and problems.append(f"failed request: {r.url} ({r.failure})"))
    page.on("response", lambda r: r.status >= 400 and problems.append(f"HTTP {r.status}: {r.url}"))
    return context, page


def _check_icon(page, problems: list[str]) -> None:
    """Fetch the page's declared icons (a failure lands in problems through the page's handlers)."""
    # Browsers fetch the icon when they please (headless Chromium once per run at most), so fetch it here;
    # a page that declares none makes browsers ask for /favicon.ico, which the book does not have.
    icons = page.evaluate(
        """() => Promise.all([...document.querySelectorAll('link[rel~="icon"]')].map(
            link => fetch(link.href).then(() => link.href)))"""
    )
    if not icons:
        problems.append(f"{page.url} has no <link rel=icon>: browsers would request /favicon.ico, which is missing")


def _visit(browser, server: str, docname: str) -> ChapterVisit:
    """Open a chapter page offline, look at it, fold and unfold its solutions; record all of it."""
    visit = ChapterVisit()
    context, page = _offline_page(browser, server, visit.problems)
    try:
        page.goto(f"{server}/{docname}.html", wait_until="load", timeout=PAGE_TIMEOUT_MS)
        _settle(page, visit)
        _check_icon(page, visit.problems)
        # The screenshot shows the page as a reader first sees it: solutions folded.
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{Path(docname).name}.png"), full_page=True)

        colab = page.locator('a[href*="colab.research.google.com"]')
        visit.colab_hrefs = [colab.nth(i).get_attribute("href") for i in range(colab.count())]
        link = page.locator("a.colab-link")
        visit.colab_link_count = link.count()
        if link.count() == 1:
            visit.colab_link = {"text": link.inner_text().strip(), "href": link.get_attribute("href"),
                                "visible": link.is_visible()}

        solutions = page.locator(".solution.dropdown")
        bodies = page.locator(".solution.dropdown > section")
        visit.solutions, visit.solution_bodies = solutions.count(), bodies.count()
        visit.open_before_click = [i + 1 for i in range(bodies.count()) if bodies.nth(i).is_visible()]
        if visit.solutions and visit.solution_bodies == visit.solutions:
            solutions.nth(0).locator(":scope > .admonition-title button.toggle-button").click()
            try:
                bodies.nth(0).wait_for(state="visible", timeout=5_000)
                visit.first_opens_on_click = True
            except Exception:  # Playwright's TimeoutError: the click did not open it
                visit.first_opens_on_click = False
            visit.others_stay_folded = not any(bodies.nth(i).is_visible() for i in range(1, bodies.count()))
        # What a folded solution holds (code, maths, a figure) is checked too: open every one still folded.
        folded = page.locator(".solution.dropdown.toggle-hidden")
        for _ in range(folded.count()):
            folded.first.locator(":scope > .admonition-title button.toggle-button").click()
        visit.still_folded_after_clicks = folded.count()
        _settle(page, visit)

        visit.math = page.evaluate(
            """() => {
                const nodes = [...document.querySelectorAll('.bd-article .math')];
                return {
                    rendered: document.querySelectorAll('.bd-article mjx-container').length,
                    raw: nodes.filter(n => !n.querySelector('mjx-container')).map(n => n.textContent.slice(0, 80)),
                    errors: [...document.querySelectorAll('.bd-article mjx-merror')].map(n => n.textContent),
                };
            }"""
        )
        # The prose as read, without code (which may hold backslashes and dollars on purpose) and typeset maths.
        visit.prose_without_code = page.evaluate(
            """() => {
                const article = document.querySelector('.bd-article').cloneNode(true);
                article.querySelectorAll('pre, code, mjx-container, script, style').forEach(n => n.remove());
                return article.textContent;
            }"""
        )
        visit.article_text = page.locator(".bd-article").text_content()
        visit.images = page.evaluate(
            """() => [...document.images].map(img => {
                const box = img.getBoundingClientRect();
                return {src: img.currentSrc || img.src, natural: img.naturalWidth, width: box.width,
                        height: box.height, figure: !!img.closest('.cell_output')};
            })"""
        )
        visit.widgets = page.locator(
            'script[type="application/vnd.jupyter.widget-view+json"], .jupyter-widgets'
        ).count()
    finally:
        context.close()
    return visit


@pytest.fixture(scope="session")
def chapter_visit(browser, server: str):
    """Visit each chapter page once (on first use), however many tests read the visit."""
    visits: dict[str, ChapterVisit | Exception] = {}

    def _get(docname: str) -> ChapterVisit:
        if docname not in visits:
            try:
                visits[docname] = _visit(browser, server, docname)
            except Exception as err:  # e.g. MathJax never started: every test of the page fails, each at once
                visits[docname] = err
        if isinstance(visits[docname], Exception):
            raise visits[docname]
        return visits[docname]

    return _get


CHAPTERS = chapter_docnames()


def test_book_address_opens_the_root_page_without_errors(browser, server: str, built_book: Path):
    # index.html redirects at once, too fast to look at in the browser: read its icon from the file.
    icon = re.search(r'<link rel="icon" href="([^"]+)"', (built_book / "index.html").read_text(encoding="utf-8"))
    assert icon, "index.html names no icon: browsers would request /favicon.ico, which is missing"
    assert (built_book / icon.group(1)).is_file(), f"index.html names the icon {icon.group(1)}, not in the build"
    problems: list[str] = []
    root = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))["root"]
    context, page = _offline_page(browser, server, problems)
    try:
        page.goto(f"{server}/", timeout=PAGE_TIMEOUT_MS)
        page.wait_for_url(f"{server}/{root}.html", timeout=PAGE_TIMEOUT_MS)
        page.wait_for_load_state("networkidle", timeout=PAGE_TIMEOUT_MS)
        _check_icon(page, problems)
    finally:
        context.close()
    assert not problems, "\n".join(problems)


def test_toc_lists_chapters():
    assert CHAPTERS, "_toc.yml lists no page under chapters/"
    for docname in CHAPTERS:
        assert (ROOT / f"{docname}.md").is_file(), f"_toc.yml lists {docname}, but {docname}.md does not exist"


def test_book_build_executes_no_chapter_that_nbval_executed(request, book_build: BookBuild):
    # scripts/test.sh runs nbval first; tests/executed_chapters.py stores each chapter nbval ran cleanly, and the
    # build takes those outputs: each chapter is executed once per test run.
    plugin = request.config.pluginmanager.get_plugin("tests.executed_chapters")
    stored = plugin.stored_chapters() if plugin else set()
    if not stored:
        pytest.skip("nbval stored no executed chapter in this run (scripts/test.sh runs nbval first, with "
                    "-p tests.executed_chapters and COURSE_EXECUTED_CACHE set)")
    if book_build.seconds is None:
        pytest.skip("_build/html was current: this run built nothing")
    again = sorted(doc for doc, run in book_build.executions.items() if run["executed"] and Path(doc).stem in stored)
    assert not again, (f"the book build ({book_build.seconds:.0f} s) executed {again} again, though nbval had "
                       "executed and stored them: myst-nb finds a stored notebook by a hash of its code cells and "
                       "kernelspec, which did not match")


@pytest.mark.parametrize("docname", CHAPTERS)
def test_chapter_loads_offline_without_errors(chapter_visit, docname: str):
    visit = chapter_visit(docname)
    assert (SCREENSHOTS / f"{Path(docname).name}.png").is_file()
    assert not visit.problems, f"{docname}:\n" + "\n".join(visit.problems)
    assert visit.widgets == 0, f"{docname} holds a Jupyter widget (a progress bar?), which would need a CDN"


@pytest.mark.parametrize("docname", CHAPTERS)
def test_chapter_math_is_rendered(chapter_visit, docname: str):
    visit = chapter_visit(docname)
    assert visit.math["rendered"] > 0, f"{docname} shows no MathJax output"
    assert not visit.math["raw"], f"{docname}: math left untypeset: {visit.math['raw']}"
    assert not visit.math["errors"], f"{docname}: MathJax could not typeset: {visit.math['errors']}"
    leftovers = sorted({m.group(0)[:60] for m in RAW_TEX.finditer(visit.prose_without_code)})
    assert not leftovers, f"{docname}: raw TeX left in the visible text: {leftovers}"


EQUATION_NUMBER = re.compile(r'<span class="eqno">\((?P<number>[^()<]+)\)')


@pytest.mark.parametrize("docname", CHAPTERS)
def test_chapter_equations_are_numbered_within_the_chapter(built_book: Path, docname: str):
    """Chapter 4's equations read (4.1), (4.2), ... (tests/test_book.py checks the references to them)."""
    page = (built_book / f"{docname}.html").read_text(encoding="utf-8")
    numbers = EQUATION_NUMBER.findall(page)
    chapter = chapter_number(docname)
    assert numbers == [f"{chapter}.{k}" for k in range(1, len(numbers) + 1)], (docname, numbers)


@pytest.mark.parametrize("docname", CHAPTERS)
def test_chapter_images_load(chapter_visit, docname: str):
    images = chapter_visit(docname).images  # looked at with every solution open, so all have a size
    figures = [img for img in images if img["figure"]]
    assert figures, f"{docname} shows no figure drawn by its code"
    broken = [img["src"] for img in images if img["natural"] == 0]
    assert not broken, f"{docname}: images that did not load: {broken}"
    invisible = [img["src"] for img in images if img["width"] == 0 or img["height"] == 0]
    assert not invisible, f"{docname}: images with no rendered size: {invisible}"
    not_png = [img["src"] for img in figures if not urlparse(img["src"]).path.endswith(".png")]
    assert not not_png, f"{docname}: figures must be PNG, got {not_png}"


@pytest.mark.parametrize("docname", CHAPTERS)
def test_chapter_has_one_colab_link_to_its_notebook(chapter_visit, docname: str):
    visit = chapter_visit(docname)
    assert len(visit.colab_hrefs) == 1, f"{docname}: expected exactly one Colab link, found {visit.colab_hrefs}"
    assert visit.colab_link_count == 1, f"{docname}: expected one a.colab-link, found {visit.colab_link_count}"
    link = visit.colab_link
    assert link["visible"] and link["text"] == "Open in Colab", f"{docname}: Colab link shown as {link}"
    match = COLAB_LINK.match(link["href"])
    assert match, f"{docname}: not a Colab GitHub URL: {link['href']}"
    owner, repo, branch, path = match.groups()
    expected = repository(ROOT)
    assert (owner, repo, branch) == (expected.owner, expected.name, expected.branch), (
        f"{docname}: {link['href']} does not match _config.yml")
    assert path == f"notebooks/{Path(docname).name}.ipynb", f"{docname}: the Colab link opens {path}"
    assert (ROOT / path).is_file(), f"{docname}: the Colab link opens {path}, which is not in the checkout"


@pytest.mark.parametrize("docname", CHAPTERS)
def test_chapter_solutions_are_folded_until_clicked(chapter_visit, docname: str):
    visit = chapter_visit(docname)
    assert visit.solutions > 0, f"{docname} has no solution (sphinx-exercise solution, :class: dropdown)"
    assert visit.solution_bodies == visit.solutions, f"{docname}: a solution has no body"
    assert not visit.open_before_click, f"{docname}: solutions open before any click: {visit.open_before_click}"
    assert visit.first_opens_on_click, f"{docname}: clicking the first solution's button did not open it"
    assert visit.others_stay_folded, f"{docname}: opening the first solution opened others too"
    assert visit.still_folded_after_clicks == 0, f"{docname}: a solution stayed folded after its button was clicked"
    # The book hides otter-grader's markers; the chapter source keeps them for the Colab edition. Test-tool
    # markers have no place in a chapter (nbval runs in lax mode: outputs are not compared).
    for marker in ("# BEGIN SOLUTION", "# END SOLUTION", "NBVAL_"):
        assert marker not in visit.article_text, f"{docname} shows the marker line {marker!r}"
