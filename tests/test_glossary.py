"""The notation and glossary appendices agree with the chapters and the companion.

- every Chinese term a chapter gives, "English (中文)" or "中文 English", is a glossary entry's Chinese name,
  under an entry whose English term appears just before it, and introduced no later than the chapter uses it;
- the glossary's terms are unique (Sphinx matches terms case-insensitively) and ``:sorted:`` is declared;
- the notation page's table of shape letters equals the table in ``companion/__init__.py``'s docstring;
- every ``{term}`` role in a chapter or page names a glossary entry.
"""
import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.md"))
GLOSSARY = ROOT / "appendices" / "glossary.md"
NOTATION = ROOT / "appendices" / "notation.md"

CJK = "\u4e00-\u9fff"
HAS_CJK = re.compile(f"[{CJK}]")


# --- parsers -------------------------------------------------------------------------------------------------

def prose(text):
    """The text of a MyST page without its fenced code (code cells, glossary excluded) and front matter."""
    text = re.sub(r"\A---\n.*?\n---\n", "", text, flags=re.S)
    return re.sub(r"^(`{3,}|~{3,})\{code-cell\}.*?^\1[ \t]*$", "", text, flags=re.S | re.M)


def chinese_terms(text):
    """(english, chinese) for each "English (中文, ...)" and "中文 English" in ``text``.

    ``english`` is the text just before the parentheses (or just after the Chinese), markup removed, in lower
    case; ``chinese`` is the Chinese part (the first item of a parenthesised list).
    """
    found = []
    for m in re.finditer(r"\(([^()]*)\)", text):
        inner = m.group(1)
        if not HAS_CJK.search(inner):
            continue
        chinese = inner.split(",")[0].split("，")[0].strip()
        before = re.split(r"[().;|]", text[max(0, m.start() - 120):m.start()])[-1]
        found.append((_plain(before), chinese))
    outside = re.sub(r"\([^()]*\)", lambda m: " " * len(m.group(0)), text)
    for m in re.finditer(f"([{CJK}]+)[ \t]+([A-Za-z][A-Za-z -]*)", outside):
        found.append((_plain(m.group(2)), m.group(1)))
    return found


def _plain(s):
    s = re.sub(r"[*_`]", "", s)
    return " ".join(s.split()).lower().strip(" ,:;.-–—")


def _singular(word):
    for end, new in (("ies", "y"), ("ches", "ch"), ("shes", "sh"), ("xes", "x"), ("sses", "ss")):
        if word.endswith(end):
            return word[: -len(end)] + new
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        return word[:-1]
    return word


def normal(s):
    return " ".join(_singular(w) for w in re.findall(r"[a-z0-9]+", s.lower()))


def parse_glossary(text):
    """(options, entries) of the ```{glossary} block: entries are dicts with terms, chinese, chapters, intro."""
    m = re.search(r"^```\{glossary\}[^\n]*\n(.*?)^```[ \t]*$", text, flags=re.S | re.M)
    assert m, "no ```{glossary} block"
    lines = m.group(1).split("\n")
    options = [ln.strip() for ln in lines if re.match(r":\w+:", ln)]
    entries, current = [], None
    for ln in lines:
        if re.match(r":\w+:", ln) or not ln.strip():
            if current is not None and current["definition"]:
                current["closed"] = True
            continue
        if ln.startswith("   "):
            assert current is not None, f"definition before any term: {ln!r}"
            current["definition"].append(ln.strip())
        else:
            if current is None or current["definition"]:
                current = {"terms": [], "definition": [], "closed": False}
                entries.append(current)
            current["terms"].append(ln.strip())
    for e in entries:
        d = " ".join(e["definition"])
        e["text"] = d
        e["chinese"] = [c for c in re.findall(r"\*\*([^*]+)\*\*", d.split(" — ")[0]) if HAS_CJK.search(c)]
        e["chapters"] = {int(n) for n in re.findall(r"chapters? (\d+)", d)}
        intro = re.search(r"Introduced in chapter (\d+)", d)
        e["intro"] = int(intro.group(1)) if intro else None
    return options, entries


def term_roles(text):
    """The glossary terms that the ``{term}`` roles of ``text`` cite (the target of `text <target>`)."""
    out = []
    for m in re.finditer(r"\{term\}`([^`]+)`", text):
        body = m.group(1)
        target = re.search(r"<([^<>]+)>\s*$", body)
        out.append(" ".join((target.group(1) if target else body).split()))
    return out


def rst_simple_table(doc):
    """The rows (first column, rest) of the first RST simple table of two columns in ``doc``."""
    lines = doc.split("\n")
    borders = [i for i, ln in enumerate(lines) if re.fullmatch(r"=+ +=+", ln.strip())]
    assert len(borders) >= 2, "no simple table"
    top, bottom = borders[0], borders[1]
    col = re.match(r"=+ +", lines[top].strip()).end()
    indent = len(lines[top]) - len(lines[top].lstrip())
    rows = []
    for ln in lines[top + 1:bottom]:
        ln = ln[indent:]
        rows.append((ln[:col].strip(), " ".join(ln[col:].split())))
    return rows


def markdown_table_after(text, heading):
    """The rows of the first Markdown table under the heading ``heading``, header row left out."""
    section = text.split(heading, 1)[1]
    rows = []
    for ln in section.split("\n"):
        if ln.startswith("|"):
            cells = [c.strip() for c in ln.strip().strip("|").split("|")]
            rows.append(cells)
        elif rows:
            break
    assert len(rows) > 2 and set(rows[1][0]) <= set("-: "), "no table under " + heading
    return rows[2:]


def unmark(cell):
    return " ".join(cell.replace("`", "").split())


# --- fixtures --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def glossary():
    return parse_glossary(GLOSSARY.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def chapter_terms():
    """{chinese: (first chapter number, [english contexts])} over all chapters."""
    out = {}
    for path in CHAPTERS:
        number = int(path.name[:2])
        for english, chinese in chinese_terms(prose(path.read_text(encoding="utf-8"))):
            first, contexts = out.setdefault(chinese, (number, []))
            contexts.append((number, english))
    return out


# --- the parsers themselves ------------------------------------------------------------------------------------

def test_chinese_term_parser():
    text = ("a **query** (查询) and *parametric* attention\npooling (参数化注意力汇聚), a **graph attention layer** "
            "(图注意力, GAT), plain (no Chinese) and 门控 gating too.")
    assert chinese_terms(text) == [
        ("a query", "查询"),
        ("and parametric attention pooling", "参数化注意力汇聚"),
        ("a graph attention layer", "图注意力"),
        ("gating too", "门控"),
    ]
    assert normal("Queries and patches") == "query and patch"


def test_glossary_parser():
    _, entries = parse_glossary(
        "```{glossary}\n:sorted:\n\nKV cache\nkey–value cache\n   **键值缓存** — Kept keys. Introduced in chapter 9.\n"
        "\nquery\n   **查询** — Looked for (chapter 4 too).\n   Introduced in chapter 1.\n```\n")
    assert [e["terms"] for e in entries] == [["KV cache", "key–value cache"], ["query"]]
    assert [e["chinese"] for e in entries] == [["键值缓存"], ["查询"]]
    assert [(e["intro"], e["chapters"]) for e in entries] == [(9, {9}), (1, {1, 4})]


def test_term_role_parser():
    text = "See {term}`query`, {term}`the keys <key>` and {term}`KV\ncache`; not {doc}`x` or `{term}`."
    assert term_roles(text) == ["query", "key", "KV cache"]


def test_shape_table_parser():
    doc = "x\n\n    ========  =======\n    B         one two\n    n_q, n_k  q; k\n    ========  =======\n"
    assert rst_simple_table(doc) == [("B", "one two"), ("n_q, n_k", "q; k")]


def test_chapters_are_found():
    assert len(CHAPTERS) == 15


# --- the glossary ---------------------------------------------------------------------------------------------

def test_glossary_terms_unique_and_sorted(glossary):
    options, entries = glossary
    assert ":sorted:" in options
    terms = [t.lower() for e in entries for t in e["terms"]]
    assert len(entries) >= 40
    duplicates = sorted({t for t in terms if terms.count(t) > 1})
    assert not duplicates, f"terms defined twice: {duplicates}"


def test_every_entry_is_complete(glossary):
    _, entries = glossary
    for e in entries:
        assert e["chinese"], f"{e['terms'][0]}: no Chinese name in bold before the definition"
        assert e["intro"] in range(1, 16), f"{e['terms'][0]}: no 'Introduced in chapter N.'"
        assert e["text"].split(" — ", 1)[1:], f"{e['terms'][0]}: no definition after the Chinese name"
    chinese = [c for e in entries for c in e["chinese"]]
    assert len(chinese) == len(set(chinese)), "a Chinese name names two entries"


def test_brief_terms_are_entries(glossary):
    _, entries = glossary
    terms = {t for e in entries for t in e["terms"]}
    wanted = {
        "query", "key", "value", "attention weights", "attention pooling", "attention scoring function",
        "additive attention", "scaled dot-product attention", "masked softmax", "multi-head attention",
        "self-attention", "positional encoding", "residual connection", "layer normalisation", "encoder",
        "decoder", "cross-attention", "causal mask", "teacher forcing", "KV cache", "gating", "GRU", "LSTM",
        "gMLP", "online softmax", "chunked attention", "local attention", "patch embedding", "class token",
        "attention rollout", "graph attention", "Nadaraya-Watson kernel regression", "bandwidth",
    }
    assert not wanted - terms, f"missing: {sorted(wanted - terms)}"


def test_chapter_chinese_terms_are_in_glossary(glossary, chapter_terms):
    _, entries = glossary
    by_chinese = {c: e for e in entries for c in e["chinese"]}
    assert len(chapter_terms) >= 20, "the chapters' Chinese terms were not found"
    missing = sorted(c for c in chapter_terms if c not in by_chinese)
    assert not missing, "Chinese terms of the chapters that the glossary lacks: " + ", ".join(
        f"{c} (chapter {chapter_terms[c][0]}: {chapter_terms[c][1][0][1][-40:]!r})" for c in missing)
    problems = []
    for chinese, (first, contexts) in chapter_terms.items():
        e = by_chinese[chinese]
        names = [normal(t) for t in e["terms"]]
        for number, english in contexts:
            if not any(n and n in normal(english) for n in names):
                problems.append(f"{chinese} in chapter {number}: {english[-40:]!r} names none of {e['terms']}")
        if e["intro"] > first:
            problems.append(f"{e['terms'][0]}: introduced in chapter {e['intro']}, but chapter {first} uses it")
        if first not in e["chapters"]:
            problems.append(f"{e['terms'][0]}: chapter {first}, which gives {chinese}, is not named")
    assert not problems, "\n".join(problems)


def test_term_roles_name_glossary_entries(glossary):
    _, entries = glossary
    terms = {t.lower() for e in entries for t in e["terms"]}
    pages = [*CHAPTERS, ROOT / "intro.md", *sorted((ROOT / "appendices").glob("*.md"))]
    unknown = []
    for path in pages:
        for term in term_roles(path.read_text(encoding="utf-8")):
            if term.lower() not in terms:
                unknown.append(f"{path.relative_to(ROOT)}: {term}")
    assert not unknown, "{term} roles that name no glossary entry: " + ", ".join(unknown)
    # The check is not vacuous while the chapters cite no term yet:
    bad = [t for t in term_roles("{term}`query` {term}`weights <attention weights>` {term}`no such term`")
           if t.lower() not in terms]
    assert bad == ["no such term"]


def test_glossary_page_heading():
    text = GLOSSARY.read_text(encoding="utf-8")
    assert text.startswith("(appendix-glossary)=\n# C. Glossary\n")


# --- the notation page ----------------------------------------------------------------------------------------

def companion_docstring():
    tree = ast.parse((ROOT / "companion" / "__init__.py").read_text(encoding="utf-8"))
    return ast.get_docstring(tree, clean=False)


def test_shape_letters_match_companion():
    expected = rst_simple_table(companion_docstring())
    assert len(expected) >= 15 and expected[0] == ("B", "sequences (or sets of queries) in a batch")
    rows = markdown_table_after(NOTATION.read_text(encoding="utf-8"), "## The shape letters of the code")
    assert [(unmark(a), unmark(b)) for a, b in rows] == expected


def test_notation_page_heading_and_symbols():
    text = NOTATION.read_text(encoding="utf-8")
    assert text.startswith("(appendix-notation)=\n# B. Notation\n")
    symbol_rows = [ln for ln in text.split("## The shape letters")[0].split("\n")
                   if ln.startswith("| $")]
    assert len(symbol_rows) >= 60
    for ln in symbol_rows:
        cells = [c.strip() for c in ln.strip().strip("|").split("|")]
        assert len(cells) == 4 and cells[1] and cells[3].isdigit() and 1 <= int(cells[3]) <= 15, ln
    for symbol in (r"\omega_i", r"\alpha", r"\lVert", r"W_o", r"d_h", r"\mathcal{N}(i)", r"\sigma", "I_t"):
        assert symbol in text, symbol
