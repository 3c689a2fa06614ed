"""MyST Markdown -> plain Markdown for notebooks outside the book (the Colab editions).

Jupyter Book renders MyST (admonitions, ``{eq}``/``{ref}``/``{doc}`` roles, labelled display maths); Colab and
Jupyter render only CommonMark with ``$$`` maths. This module parses a chapter's Markdown into blocks, collects the
labels it and the other chapters define (equations are numbered as the book numbers them) and converts the MyST
constructs into Markdown a learner reads the same way: admonitions become quoted blocks with a bold title,
references become text (and links to the book where the target is on another page).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

__all__ = [
    "SOLUTION_MARKERS", "Block", "References", "chapter_number", "collect_references", "myst_to_markdown",
    "parse_blocks",
]

# --------------------------------------------------------------------------- MyST blocks

_FENCE = re.compile(r"^ {0,3}(?P<fence>`{3,}|:{3,})\s*(?P<info>.*)$")
_DIRECTIVE = re.compile(r"^\{(?P<name>[A-Za-z][\w-]*)\}\s*(?P<arg>.*)$")
_OPTION = re.compile(r"^:(?P<key>[\w-]+):\s*(?P<value>.*)$")

ADMONITIONS = {
    "admonition": "",
    "note": "Note",
    "tip": "Tip",
    "important": "Important",
    "warning": "Warning",
    "seealso": "See also",
}
SOLUTION_MARKERS = ("solution-start", "solution-end")
DIRECTIVES = (*ADMONITIONS, "exercise", *SOLUTION_MARKERS)
ROLES = ("eq", "ref", "numref", "doc", "term")


@dataclass
class Block:
    """A top-level piece of a Markdown cell: plain text, a fenced code block or a directive."""

    kind: str  # "text" | "code" | "directive"
    raw: list[str]  # the original lines, fences included
    name: str = ""
    arg: str = ""
    options: dict[str, str] = field(default_factory=dict)
    body: list[str] = field(default_factory=list)


def parse_blocks(text: str) -> list[Block]:
    """Split Markdown into text, fenced code and (possibly nested) directive blocks."""
    lines = text.split("\n")
    blocks: list[Block] = []
    pending: list[str] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        directive = _DIRECTIVE.match(m["info"].strip()) if m else None
        if m is None or (m["fence"][0] == ":" and directive is None):
            pending.append(lines[i])
            i += 1
            continue
        fence = m["fence"]
        closing = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        j = i + 1
        while j < len(lines) and not closing.match(lines[j]):
            j += 1
        if directive is not None and j == len(lines):
            raise ValueError(f"expected a closing {fence} for the directive opened by {lines[i]!r}, found none")
        if pending:
            blocks.append(Block("text", pending))
            pending = []
        raw = lines[i : j + 1]
        if directive is None:
            blocks.append(Block("code", raw))
        else:
            options, body = _split_options(lines[i + 1 : j])
            blocks.append(Block("directive", raw, directive["name"], directive["arg"].strip(), options, body))
        i = j + 1
    if pending:
        blocks.append(Block("text", pending))
    return blocks


def _split_options(body: list[str]) -> tuple[dict[str, str], list[str]]:
    """Directive options (``:key: value`` lines or a ``---`` YAML block) and the content after them."""
    options: dict[str, str] = {}
    k = 0
    if body and body[0].strip() == "---":
        end = next((n for n in range(1, len(body)) if body[n].strip() == "---"), None)
        if end is None:
            raise ValueError(f"expected a closing '---' after the directive options, got {body!r}")
        loaded = yaml.safe_load("\n".join(body[1:end])) or {}
        options = {str(key): str(value) for key, value in loaded.items()}
        k = end + 1
    else:
        while k < len(body) and (m := _OPTION.match(body[k])):
            options[m["key"]] = m["value"].strip()
            k += 1
    return options, body[k:]


# --------------------------------------------------------------------------- references


@dataclass
class References:
    """What cross-references resolve to in plain Markdown: equation numbers and titles."""

    equations: dict[str, str] = field(default_factory=dict)  # label -> "4.1"
    titles: dict[str, str] = field(default_factory=dict)
    docs: dict[str, str] = field(default_factory=dict)


_TARGET = re.compile(r"^\s*\((?P<label>[^()\s]+)\)=\s*$")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(?P<title>.+?)\s*#*\s*$")
_DISPLAY_MATH = re.compile(r"\$\$(?P<body>.+?)\$\$(?:[ \t]*\((?P<label>[^()\s]+)\))?", re.DOTALL)
_ROLE = re.compile(r"\{(?P<role>[A-Za-z][\w:-]*)\}`(?P<content>[^`]+)`")
_NUMBERED_ENV = re.compile(r"\\begin\{(equation|align|alignat|flalign|gather|multline|eqnarray)\*?\}")
_EXPLICIT = re.compile(r"^(?P<text>.*?)\s*<(?P<target>[^<>]+)>$", re.DOTALL)


def _walk_text(blocks: Iterable[Block]) -> Iterable[tuple[str, Block]]:
    """Every text block and directive, depth first, with nested directive bodies parsed."""
    for block in blocks:
        if block.kind == "text":
            yield "text", block
        elif block.kind == "directive":
            yield "directive", block
            yield from _walk_text(parse_blocks("\n".join(block.body)))


def chapter_number(name: str) -> int | None:
    """4 for ``04_attention_scoring`` or ``chapters/04_attention_scoring``; None for a page
    that is not a numbered chapter (the intro, an appendix)."""
    match = re.match(r"(?:chapters/)?(\d+)_", name)
    return int(match[1]) if match else None


def collect_references(
    markdown_sources: Iterable[str],
    refs: References | None = None,
    *,
    number_equations: bool = True,
    chapter: int | None = None,
) -> References:
    """Collect labelled equations (numbered in order), section targets and exercise labels.

    Equations are numbered as the book numbers them: "4.1", "4.2", ... in chapter 4
    (``chapter=4``); "1", "2", ... without a chapter.
    """
    prefix = "" if chapter is None else f"{chapter}."
    refs = refs or References()
    count = len(refs.equations)
    for source in markdown_sources:
        for kind, block in _walk_text(parse_blocks(source)):
            if kind == "directive":
                label = block.options.get("label")
                if label and block.name == "exercise":
                    refs.titles[label] = f"Exercise: {block.arg}" if block.arg else "Exercise"
                continue
            lines = block.raw
            for n, line in enumerate(lines):
                target = _TARGET.match(line)
                if target:
                    following = next((l for l in lines[n + 1 :] if l.strip()), "")
                    heading = _HEADING.match(following)
                    if heading:
                        refs.titles[target["label"]] = heading["title"]
            if number_equations:
                for m in _DISPLAY_MATH.finditer("\n".join(lines)):
                    if m["label"] and m["label"] not in refs.equations:
                        count += 1
                        refs.equations[m["label"]] = f"{prefix}{count}"
    return refs


# --------------------------------------------------------------------------- MyST -> Markdown


def myst_to_markdown(text: str, refs: References | None = None) -> str:
    """Rewrite the MyST subset of CONTRIBUTING.md as plain Markdown that Colab renders.

    Directives become a bold heading (``{exercise}``) or a blockquote with a
    bold title (admonitions); ``$$…$$ (label)`` loses its label (and gets a
    ``\\tag`` with the book's equation number); roles become plain text.
    Anything outside the subset raises ``ValueError``.
    """
    refs = refs or References()
    chunks: list[str] = []
    for block in parse_blocks(text):
        if block.kind == "code":
            chunk = "\n".join(block.raw)
        elif block.kind == "text":
            chunk = _tidy(_convert_text("\n".join(block.raw), refs))
        else:
            chunk = "\n".join(_convert_directive(block, refs))
        if chunk.strip():
            chunks.append(chunk)
    return "\n\n".join(chunks)


def _convert_directive(block: Block, refs: References) -> list[str]:
    if block.name == "exercise":
        heading = f"**Exercise: {_convert_text(block.arg, refs)}**" if block.arg else "**Exercise**"
        body = myst_to_markdown("\n".join(block.body), refs)
        return [heading, "", *body.split("\n")] if body else [heading]
    if block.name in ADMONITIONS:
        body_lines = list(block.body)
        if block.name == "admonition":
            if not block.arg:
                raise ValueError("expected a title after {admonition}, got none")
            title = _convert_text(block.arg, refs)
        else:
            title = ADMONITIONS[block.name]
            if block.arg:  # MyST reads an argument of {note} etc. as the first line of the body
                body_lines = [block.arg, *body_lines]
        body = myst_to_markdown("\n".join(body_lines), refs)
        quoted = [f"> **{title}**"]
        if body:
            quoted.append(">")
            quoted.extend(f"> {line}" if line else ">" for line in body.split("\n"))
        return quoted
    if block.name in SOLUTION_MARKERS:
        raise ValueError(
            f"expected {{{block.name}}} only around an exercise's solution, found it nested in a directive"
        )
    raise ValueError(
        f"expected one of the directives {', '.join('{' + d + '}' for d in DIRECTIVES)}, "
        f"got {{{block.name}}}: the Colab converter understands only these"
    )


def _convert_text(text: str, refs: References) -> str:
    lines = [line for line in text.split("\n") if not _TARGET.match(line)]
    text = "\n".join(lines)
    text = _DISPLAY_MATH.sub(lambda m: _convert_math(m, refs), text)
    return _ROLE.sub(lambda m: _convert_role(m, refs), text)


def _convert_math(m: re.Match[str], refs: References) -> str:
    body, label = m["body"], m["label"]
    if label is None:
        return m.group(0)
    number = refs.equations.get(label)
    if number is None or "\\tag" in body or _NUMBERED_ENV.search(body):
        return f"$${body}$$"  # these environments number their own lines: a \\tag outside would clash
    trailing = body[len(body.rstrip()) :]  # keep a multi-line block multi-line
    return f"$${body.rstrip()} \\tag{{{number}}}{trailing}$$"


def _convert_role(m: re.Match[str], refs: References) -> str:
    role, content = m["role"], m["content"].strip()
    if role not in ROLES:
        raise ValueError(
            f"expected one of the roles {', '.join('{' + r + '}' for r in ROLES)}, got {{{role}}}`{content}`"
        )
    explicit = _EXPLICIT.match(content)
    text, target = (explicit["text"].strip(), explicit["target"].strip()) if explicit else ("", content)
    if role == "eq":
        number = refs.equations.get(target)
        return f"({number})" if number is not None else f"({target})"
    if role == "term":
        return text or target
    if role == "doc":
        return text or refs.docs.get(Path(target).stem, Path(target).stem.replace("_", " "))
    title = refs.titles.get(target, target)
    if text:
        return text.replace("%s", title).replace("{number}", title).replace("{name}", title)
    return title


def _tidy(text: str) -> str:
    """Strip blank lines at both ends and collapse runs of blank lines to one (text, not code)."""
    out: list[str] = []
    for line in text.split("\n"):
        if not line.strip() and (not out or not out[-1].strip()):
            continue
        out.append(line)
    return "\n".join(out).strip("\n")
