"""Sphinx extension that makes the course book work offline and link every chapter to its Colab edition.

What it does, event by event:

- ``config-inited``: sets ``COMPANION_PROGRESS=0`` before any notebook executes, so the training loops of
  ``companion.train`` draw no tqdm widget into the static pages (a widget would need a CDN to render), and
  the inline matplotlib backend, so an ``MPLBACKEND`` set outside cannot take the figures away; and,
  unless the last build was clean, makes this build read every page again, so old warnings are raised again.
- ``builder-inited`` (HTML builders): removes the clean-build stamp of the last build; checks that MathJax 3
  was installed from npm (``npm ci``) and points ``mathjax_path`` at the copy served from the book's own
  ``_static`` folder, so equations render offline. When ``COURSE_EXECUTED_CACHE`` names a folder (the test run
  sets it: ``tests/executed_chapters.py`` stores there every chapter nbval executed), switches myst-nb to its
  "cache" mode on that jupyter-cache, so a chapter nbval already executed is not executed again; without it,
  every chapter the build reads is executed.
- ``env-before-read-docs``: notes which chapters this build reads.
- ``doctree-read``: strips otter-grader's ``# BEGIN SOLUTION`` / ``# END SOLUTION`` marker lines from the
  rendered notebook code cells (the chapter sources keep them; the Colab edition uses them to blank the answer);
  makes every page depend on this file and each chapter on the companion files it runs (``course.dependencies``),
  so that a change in either is seen by the next incremental build (the chapter is then executed again).
- ``env-get-updated`` (after Sphinx has numbered figures and equations): numbers each chapter's equations
  (4.1), (4.2), ... instead of across the book; the Colab editions number them the same way.
- ``doctree-resolved``: adds an "Open in Colab" link under the title of every page in ``chapters/``, pointing at
  ``notebooks/<stem>.ipynb`` on GitHub, with owner, repository and branch read from ``repository:`` in
  ``_config.yml`` (``course.config``).
- ``html-page-context``: writes each inline script once (Sphinx 7.4 can write one twice, a console error).
- ``build-finished``: copies the MathJax files the pages load (and nothing else) into ``_static/mathjax``;
  turns the bare index.html redirect into a page that names the favicon; writes ``.clean-build.json``
  when the build ended with no warning, so the browser test can tell a clean build from one that merely
  produced HTML; and writes ``.chapter-executions.json``: for each chapter this build read, whether it was
  executed, myst-nb's execution method and the seconds it ran.
"""
from __future__ import annotations

import html
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from docutils import nodes
from myst_nb.sphinx_ import NbMetadataCollector
from sphinx.application import ENV_PICKLE_FILENAME, Sphinx
from sphinx.config import Config
from sphinx.environment import BuildEnvironment
from sphinx.errors import ConfigError, ExtensionError

from course.config import repository
from course.dependencies import chapter_dependencies
from course.myst import chapter_number

__version__ = "1.0.0"

CHAPTER_DIR = "chapters/"
NOTEBOOK_DIR = "notebooks"
COLAB_BASE = "https://colab.research.google.com/github"
MATHJAX_STATIC = "mathjax"  # folder under the build's _static
CLEAN_BUILD_STAMP = ".clean-build.json"
EXECUTIONS_RECORD = ".chapter-executions.json"  # how each chapter read by the last build got its outputs
# A folder holding a jupyter-cache of executed chapter notebooks (tests/executed_chapters.py fills one per test run).
EXECUTED_CACHE_VARIABLE = "COURSE_EXECUTED_CACHE"

# Only these MathJax files are served: the combined TeX-to-CHTML component, the CHTML web fonts it fetches
# glyph by glyph, and the TeX extensions its autoload package fetches the first time a page uses one of their
# macros (\boldsymbol, \cancel, \color, ...). Paths are relative to node_modules/mathjax/es5.
MATHJAX_ENTRY = "tex-chtml.js"
MATHJAX_GLOBS = ("tex-chtml.js", "output/chtml/fonts/woff-v2/*.woff", "input/tex/extensions/*.js")
# all-packages.js bundles every extension at once; autoload never asks for it.
MATHJAX_SKIP = {"input/tex/extensions/all-packages.js"}

# The whole of the index.html that sphinx-external-toc writes when the root page is not called index.
ETOC_REDIRECT = re.compile(r'^<meta http-equiv="Refresh" content="0; url=([^"]+)" />\s*$')
# otter-grader's block markers (optionally "NO PROMPT"), alone on their line.
SOLUTION_MARKER = re.compile(r"^[ \t]*#[ \t]*(BEGIN|END)[ \t]+SOLUTION([ \t]+NO[ \t]+PROMPT)?[ \t]*$")


def set_kernel_environment(app: Sphinx, config: Config) -> None:
    """Turn off companion progress bars and draw inline in every kernel the build starts."""
    # Kernels inherit this process's environment, and config-inited runs before myst-nb executes anything.
    os.environ["COMPANION_PROGRESS"] = "0"
    # A non-interactive MPLBACKEND in the environment (Agg, say) would reach the kernels too and leave the pages
    # without figures: the kernels draw with the inline backend, whose PNGs become the pages' images.
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"


def reread_after_unclean_build(app: Sphinx, config: Config) -> None:
    """Read every page again when the last build had warnings, so that they are raised again."""
    # Sphinx warns about a page only when it reads or writes it: after a build with warnings, an incremental
    # build that leaves those pages alone would pass -W. Dropping the saved environment (config-inited comes
    # before Sphinx loads it) makes this build a full one; a clean last build keeps builds incremental.
    if not (Path(app.outdir) / CLEAN_BUILD_STAMP).is_file():
        (Path(app.doctreedir) / ENV_PICKLE_FILENAME).unlink(missing_ok=True)


def _mathjax_source(book_root: Path) -> Path:
    """node_modules/mathjax/es5 of the book, checked against the version pinned in package.json."""
    package_json = book_root / "package.json"
    module_dir = book_root / "node_modules" / "mathjax"
    try:
        wanted = json.loads(package_json.read_text(encoding="utf-8"))["dependencies"]["mathjax"]
    except (OSError, KeyError, ValueError) as err:
        raise ConfigError(
            f"expected {package_json} to pin mathjax under 'dependencies' (the book serves MathJax itself), "
            f"but reading it failed: {err!r}"
        ) from err
    entry = module_dir / "es5" / MATHJAX_ENTRY
    if not entry.is_file():
        raise ConfigError(
            f"MathJax is not installed: expected {entry}, which is missing. "
            f"Run `npm ci` in {book_root} (it installs mathjax {wanted} from package-lock.json), then build again."
        )
    try:
        found = json.loads((module_dir / "package.json").read_text(encoding="utf-8"))["version"]
    except (OSError, KeyError, ValueError):
        found = "an unknown version"
    if found != wanted:
        raise ConfigError(
            f"expected mathjax {wanted} (pinned in package.json) in {module_dir}, found {found}. "
            f"Run `npm ci` in {book_root} to install the pinned version."
        )
    return module_dir / "es5"


def use_local_mathjax(app: Sphinx) -> None:
    """Point mathjax_path at the book's own copy of MathJax 3, failing early if it is not installed."""
    if app.builder.format != "html":
        return
    # A stamp from an earlier build says nothing about this one, whichever way this one ends.
    (Path(app.outdir) / CLEAN_BUILD_STAMP).unlink(missing_ok=True)
    _mathjax_source(Path(app.confdir))
    # A relative mathjax_path is resolved against _static by Sphinx. The mathjax3_config that Jupyter Book and
    # MyST set (which HTML classes to typeset) is kept: Sphinx writes it as window.MathJax before this script.
    app.config.mathjax_path = f"{MATHJAX_STATIC}/{MATHJAX_ENTRY}"


def use_executed_notebooks(app: Sphinx) -> None:
    """Take the chapters' outputs from the executed notebooks in $COURSE_EXECUTED_CACHE, if set."""
    folder = os.environ.get(EXECUTED_CACHE_VARIABLE)
    if not folder:
        return
    # myst-nb's "cache" mode: a chapter whose code cells match a stored notebook takes its outputs, any other is
    # executed (and stored). It is set on myst-nb's own configuration, which myst-nb has just made from Sphinx's:
    # a changed nb_execution_mode in Sphinx's configuration would make this build read every page, and the next
    # plain build (force mode) read and execute every chapter once more.
    cache = str(Path(folder).resolve())
    app.env.mystnb_config = app.env.mystnb_config.copy(execution_mode="cache", execution_cache_path=cache)


def _cached_notebooks(app: Sphinx) -> set[tuple[str, str]]:
    """(source file, hash) of each notebook in the jupyter-cache the build reads, if it reads one."""
    config = app.env.mystnb_config
    if config.execution_mode != "cache":
        return set()
    from jupyter_cache import get_cache

    records = get_cache(config.execution_cache_path).list_cache_records()
    return {(str(Path(record.uri).resolve()), record.hashkey) for record in records}


def note_chapters_to_read(app: Sphinx, env: BuildEnvironment, docnames: list[str]) -> None:
    """Remember the chapters this build reads, and what the cache of executed notebooks held."""
    # myst-nb records "cache" as the method whether a chapter's outputs came from the cache or it was executed
    # and then stored: a notebook stored during this build is one the build executed.
    env.course_chapters_read = [name for name in docnames if name.startswith(CHAPTER_DIR)]
    env.course_cached_before = _cached_notebooks(app)


def record_executions(app: Sphinx, exception: Exception | None) -> None:
    """Write how each chapter this build read got its outputs (executed or not, seconds) to the build."""
    if exception is not None or app.builder.format != "html":
        return
    env = app.env
    stored_now = {source for source, _ in _cached_notebooks(app) - env.course_cached_before}
    record = {}
    for docname in env.course_chapters_read:
        data = NbMetadataCollector.get_exec_data(env, docname) or {}
        method = data.get("method")
        executed = method not in (None, "cache") or str(Path(env.doc2path(docname)).resolve()) in stored_now
        record[docname] = {"executed": executed, "method": method, "seconds": data.get("runtime")}
    (Path(app.outdir) / EXECUTIONS_RECORD).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


def strip_solution_markers(app: Sphinx, doctree: nodes.document) -> None:
    """Remove otter's solution marker lines from the rendered code cells."""
    for cell_input in doctree.findall(nodes.container):
        if cell_input.get("nb_element") != "cell_code_source":
            continue  # only notebook code cells: a fenced block that explains the markers keeps them
        for block in cell_input.findall(nodes.literal_block):
            text = block.astext()
            kept = [line for line in text.splitlines() if not SOLUTION_MARKER.match(line)]
            if len(kept) != len(text.splitlines()):
                new_text = "\n".join(kept)
                block.rawsource = new_text
                block[:] = [nodes.Text(new_text)]


def note_code_dependencies(app: Sphinx, doctree: nodes.document) -> None:
    """Make every page depend on this extension, and each chapter on the companion files it runs."""
    # Sphinx re-reads a page only when the page or a noted dependency is newer than its last read. A chapter runs
    # companion code, so a change in a module it runs must execute it again (course.dependencies says which);
    # course/, tests/ and scripts/ never run in a chapter. A change here changes how every page renders.
    srcdir = Path(app.srcdir)
    app.env.note_dependency(os.path.relpath(__file__, srcdir))
    if not app.env.docname.startswith(CHAPTER_DIR):
        return
    for path in chapter_dependencies(srcdir, Path(app.env.doc2path(app.env.docname))):
        app.env.note_dependency(path)


def number_equations_per_chapter(app: Sphinx, env: BuildEnvironment) -> list[str]:
    """Number each chapter's equations (4.1), (4.2), ...: Sphinx numbers them across the
    whole book when the table of contents is not numbered. The Colab editions use the same
    numbers (``course.notebooks.chapter_references``)."""
    for docname, numbers in env.toc_fignumbers.items():
        chapter, equations = chapter_number(docname), numbers.get("displaymath")
        if chapter is None or not equations:
            continue
        in_order = sorted(equations, key=equations.__getitem__)
        numbers["displaymath"] = {eq: (chapter, k) for k, eq in enumerate(in_order, 1)}
    return []


def colab_url(app: Sphinx, docname: str) -> str:
    """The Colab URL of the generated notebook of a chapter page."""
    try:
        repo = repository(Path(app.srcdir))
    except ValueError as err:
        raise ExtensionError(str(err)) from err
    notebook = f"{NOTEBOOK_DIR}/{Path(docname).name}.ipynb"
    in_repo = f"{repo.path_to_book}/{notebook}" if repo.path_to_book else notebook
    return f"{COLAB_BASE}/{repo.owner}/{repo.name}/blob/{repo.branch}/{in_repo}"


def add_colab_link(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    """Put an "Open in Colab" link under the title of every chapter page."""
    if app.builder.format != "html" or not docname.startswith(CHAPTER_DIR):
        return
    url = colab_url(app, docname)
    link = nodes.raw(
        "",
        f'<p class="colab-link-line"><a class="colab-link" href="{url}" target="_blank" rel="noopener">'
        "Open in Colab</a></p>\n",
        format="html",
    )
    section = next(iter(doctree.findall(nodes.section)), None)
    if section is None or not section.children or not isinstance(section[0], nodes.title):
        raise ExtensionError(f"expected chapter page {docname!r} to start with a '# N. Title' heading, found none")
    section.insert(1, link)


def drop_duplicate_scripts(app: Sphinx, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    """Write each inline script once per page, so none is declared twice."""
    # Sphinx 7.4 registers an inline script added after the builder started once with filename None and again,
    # when writing starts, with filename '': the page then runs sphinx-thebe's `const THEBE_JS_URL = ...` twice,
    # a SyntaxError in the browser console of every page.
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[tuple[str, str]] = set()
    unique = []
    for script in scripts:
        if hasattr(script, "filename"):  # a Sphinx _JavaScript: None and '' both mean "inline"
            key = (str(script.filename or ""), repr(sorted(script.attributes.items())))
        else:  # an old-style plain file name
            key = (str(script), "")
        if key not in seen:
            seen.add(key)
            unique.append(script)
    scripts[:] = unique


def _copy_mathjax(source: Path, static_dir: Path) -> None:
    """Copy the served subset of MathJax, and its licence, into _static/mathjax."""
    target = static_dir / MATHJAX_STATIC
    if target.exists():
        shutil.rmtree(target)  # a stale file from an older MathJax must not linger
    for pattern in MATHJAX_GLOBS:
        for path in sorted(source.glob(pattern)):
            rel = path.relative_to(source).as_posix()
            if rel in MATHJAX_SKIP:
                continue
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target / rel)
    shutil.copy2(source.parent / "LICENSE", target / "LICENSE")


def _complete_redirect_page(app: Sphinx, outdir: Path) -> None:
    """Make the bare index.html redirect that Jupyter Book writes a page that names the favicon."""
    index = outdir / "index.html"
    match = ETOC_REDIRECT.match(index.read_text(encoding="utf-8")) if index.is_file() else None
    if match is None:
        return  # the root page is index itself, or this page was already completed
    target = html.escape(match.group(1))
    title = html.escape(app.config.html_title or app.config.project)
    # Without a <link rel="icon"> the browser asks for /favicon.ico, which the book does not have: a 404.
    favicon = app.config.html_favicon
    icon = "" if not favicon else (
        f'<link rel="icon" href="{html.escape(favicon if "://" in favicon else "_static/" + Path(favicon).name)}">'
    )
    index.write_text(
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{title}</title>\n'
        f'<meta http-equiv="Refresh" content="0; url={target}">\n{icon}\n</head>\n'
        f'<body><p><a href="{target}">{title}</a></p></body>\n</html>\n',
        encoding="utf-8",
    )


def finish_build(app: Sphinx, exception: Exception | None) -> None:
    """Serve MathJax from the build, complete the index redirect, record a clean build."""
    if exception is not None or app.builder.format != "html":
        return
    outdir = Path(app.outdir)
    _copy_mathjax(_mathjax_source(Path(app.confdir)), outdir / "_static")
    _complete_redirect_page(app, outdir)
    # Sphinx keeps its warning count private; without it we cannot vouch for the build, so no stamp.
    if getattr(app, "_warncount", None) == 0:
        stamp = {"warnings": 0, "nitpicky": bool(app.config.nitpicky)}
        (outdir / CLEAN_BUILD_STAMP).write_text(json.dumps(stamp) + "\n", encoding="utf-8")


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the course book's event handlers."""
    app.connect("config-inited", set_kernel_environment)
    app.connect("config-inited", reread_after_unclean_build)
    app.connect("builder-inited", use_local_mathjax)
    app.connect("builder-inited", use_executed_notebooks, priority=900)  # after myst-nb makes its configuration
    app.connect("env-before-read-docs", note_chapters_to_read)
    app.connect("doctree-read", strip_solution_markers)
    app.connect("doctree-read", note_code_dependencies)
    app.connect("env-get-updated", number_equations_per_chapter, priority=900)  # after Sphinx numbers them
    app.connect("doctree-resolved", add_colab_link)
    app.connect("html-page-context", drop_duplicate_scripts)
    app.connect("build-finished", finish_build)
    app.connect("build-finished", record_executions)
    return {"version": __version__, "parallel_read_safe": True, "parallel_write_safe": True}
