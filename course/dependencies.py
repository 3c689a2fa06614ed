"""Which files of the companion package a chapter runs, read from the sources with ``ast`` (nothing is imported).

The book executes a chapter again when one of these files changes (``_ext/course_book.py`` notes them as the
chapter's dependencies). A chapter runs

- the modules its code cells reach: ``companion.X`` (the module that defines X, or the submodule X),
  ``from companion.m import X``, ``from companion.exercises import m``, ``import companion.m``;
- the companion modules those import, transitively (``from .x import``, ``from ..x import``,
  ``from companion.x import``, also inside functions; not under ``if TYPE_CHECKING:``, which never runs);
- the ``__init__.py`` of every package on the way.

A package's ``__init__.py`` imports all of its modules, so following its imports would make every chapter
depend on every module: a package counts as its ``__init__.py`` alone, and a name reached through a package
counts as the module that defines the name. The generated ``companion/exercise_checks/`` is never run by a
chapter; ``course/``, ``tests/`` and ``scripts/`` are outside the package, so no chapter depends on them.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["PACKAGE", "PackageIndex", "chapter_dependencies", "package_files"]

PACKAGE = "companion"
GENERATED = "exercise_checks"  # otter's public checks, written by course.notebooks; the chapters never import them


@dataclass
class Module:
    """What one companion module defines and imports, as far as the dependencies need it."""

    name: str  # dotted, e.g. companion.tasks.text
    path: str  # repository-relative, e.g. companion/tasks/text.py
    is_package: bool
    defines: set[str] = field(default_factory=set)  # top-level def, class and assignment targets
    reexports: dict[str, tuple[str, str]] = field(default_factory=dict)  # `from M import x as name`: name -> (M, x)
    stars: list[str] = field(default_factory=list)  # top-level `from M import *`: M
    imports: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)  # (M, names) of every import it runs


def package_files(root: Path) -> list[Path]:
    """Every source file of the companion package under ``root``, the generated checks left out."""
    package = root / PACKAGE
    return sorted(path for path in package.rglob("*.py")
                  if "__pycache__" not in path.parts and GENERATED not in path.relative_to(package).parts)


def _absolute(module: Module, target: str | None, level: int) -> str:
    """The dotted name that ``from <level dots><target> import ...`` inside ``module`` means."""
    if level == 0:
        return target or ""
    base = module.name.split(".") if module.is_package else module.name.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def _is_type_checking(node: ast.AST) -> bool:
    """True for ``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``), whose imports never run."""
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of ``tree`` except those under ``if TYPE_CHECKING:``."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        todo.extend(child for child in ast.iter_child_nodes(node) if not _is_type_checking(child))


def _note_top_level(module: Module, tree: ast.Module) -> None:
    """Record the names ``module`` defines, re-exports and star-imports at its top level."""
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            module.defines.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            module.defines.update(t.id for target in targets for t in ast.walk(target) if isinstance(t, ast.Name))
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(module, node.module, node.level)
            for alias in node.names:
                if alias.name == "*":
                    module.stars.append(source)
                else:
                    module.reexports[alias.asname or alias.name] = (source, alias.name)


def _read_module(root: Path, path: Path) -> Module:
    """Parse one companion file into a Module."""
    rel = path.relative_to(root)
    is_package = path.name == "__init__.py"
    parts = rel.parent.parts if is_package else rel.with_suffix("").parts
    module = Module(".".join(parts), rel.as_posix(), is_package)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(rel))
    _note_top_level(module, tree)
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            module.imports.extend((alias.name, ()) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names = tuple(alias.name for alias in node.names)
            module.imports.append((_absolute(module, node.module, node.level), names))
    return module


def _dotted(node: ast.AST) -> list[str] | None:
    """``["a", "b", "c"]`` for the expression ``a.b.c`` (a plain chain of attributes), else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return [node.id, *reversed(parts)] if isinstance(node, ast.Name) and parts else None


def _packages_above(name: str) -> list[str]:
    """The packages that hold the module ``name``: ``companion``, ``companion.tasks`` for companion.tasks.text."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _parse_cell(source: str) -> ast.AST:
    """A code cell as Python: IPython's magics and shell escapes become the calls IPython makes of them."""
    from IPython.core.inputtransformer2 import TransformerManager

    return ast.parse(TransformerManager().transform_cell(source))


class PackageIndex:
    """The companion package's modules, read once: resolves the names and imports a chapter uses."""

    def __init__(self, root: Path) -> None:
        modules = (_read_module(root, path) for path in package_files(root))
        self.modules = {module.name: module for module in modules}

    def defining_module(self, module: str, name: str, seen: frozenset[str] = frozenset()) -> str | None:
        """The module where ``module.name`` is defined (a submodule counts as itself), None if not found."""
        if f"{module}.{name}" in self.modules:
            return f"{module}.{name}"
        found = self.modules.get(module)
        if found is None or module in seen:
            return None
        if name in found.defines:
            return module
        if name in found.reexports:
            source, original = found.reexports[name]
            return self.defining_module(source, original, seen | {module})
        for star in found.stars:
            if (where := self.defining_module(star, name, seen | {module})) is not None:
                return where
        return None

    def reached(self, module: str, names: Iterable[str] = ()) -> set[str]:
        """The companion modules that ``from module import names`` (``import module`` when no names) runs."""
        found = self.modules.get(module)
        if found is None:
            return set()  # not companion code: torch, the standard library, ...
        names = tuple(names)
        if not names or not found.is_package:
            return {module}  # importing anything from a module runs all of it
        reached = {module}
        for name in names:
            if name == "*":
                reached.update(m for star in found.stars for m in self.reached(star, ["*"]))
            else:
                reached.add(self.defining_module(module, name) or module)
        return reached

    def reached_by_attributes(self, module: str, attributes: Iterable[str]) -> set[str]:
        """The companion modules that ``module.a.b...`` reaches: submodules on the way, then the name's module."""
        for attribute in attributes:
            if f"{module}.{attribute}" not in self.modules:
                return self.reached(module, [attribute])
            module = f"{module}.{attribute}"
        return self.reached(module)

    def files(self, modules: Iterable[str]) -> set[str]:
        """Paths of ``modules``, of the modules they import (transitively) and of the packages on the way."""
        files: set[str] = set()
        todo, done = list(modules), set()
        while todo:
            name = todo.pop()
            if name in done or name not in self.modules:
                continue
            done.add(name)
            module = self.modules[name]
            files.add(module.path)
            files.update(self.modules[package].path for package in _packages_above(name) if package in self.modules)
            if not module.is_package:  # a package's own imports pull in all of its modules (see the docstring)
                for target, names in module.imports:
                    todo.extend(self.reached(target, names))
        return files

    def chapter_modules(self, sources: Iterable[str]) -> set[str]:
        """The companion modules that these code cells reach directly (imports, then ``companion.X...``)."""
        nodes = [node for source in sources for node in ast.walk(_parse_cell(source))]
        reached, aliases = self._imported(nodes)
        for node in nodes:
            chain = _dotted(node)
            if chain and chain[0] in aliases:
                reached |= self.reached_by_attributes(aliases[chain[0]], chain[1:])
        return reached

    def _imported(self, nodes: Iterable[ast.AST]) -> tuple[set[str], dict[str, str]]:
        """The companion modules these import statements run, and the local names they bind to companion modules."""
        reached: set[str] = set()
        aliases: dict[str, str] = {}
        for node in nodes:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] != PACKAGE:
                        continue
                    reached |= self.reached(alias.name)
                    if alias.asname:
                        aliases[alias.asname] = alias.name
                    else:
                        aliases[PACKAGE] = PACKAGE  # `import companion.m` binds the name companion
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == PACKAGE:
                reached |= self.reached(node.module, [alias.name for alias in node.names])
                for alias in node.names:
                    if f"{node.module}.{alias.name}" in self.modules:  # a submodule: from companion.exercises import m
                        aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        return reached, aliases


def chapter_dependencies(root: Path, chapter: Path) -> list[str]:
    """Repository-relative paths of the companion files that ``chapter`` (a MyST notebook) runs, sorted.

    When a companion file or a code cell cannot be parsed, the dependencies cannot be told: then every
    companion file counts, so that fixing the file re-executes every chapter that might need it.
    """
    import jupytext

    sources = [cell.source for cell in jupytext.read(chapter).cells if cell.cell_type == "code"]
    try:
        index = PackageIndex(root)
        return sorted(index.files(index.chapter_modules(sources)))
    except SyntaxError:
        return sorted(path.relative_to(root).as_posix() for path in package_files(root))
