"""The book's settings that the course tools, the book's extension and the tests share, read from ``_config.yml``.

``repository:`` is read here and only here: the Colab editions install the companion package from it, every
chapter page's "Open in Colab" link points into it, and the browser test checks those links against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import yaml

__all__ = ["Repository", "repository"]

DEFAULT_BRANCH = "main"


@dataclass(frozen=True)
class Repository:
    """The GitHub repository that holds the book."""

    url: str  # https://github.com/<owner>/<name>, as written in _config.yml
    branch: str
    owner: str
    name: str
    path_to_book: str = ""  # folder of the book inside the repository; "" for its root

    @property
    def pip_source(self) -> str:
        """What pip installs the companion package from: ``git+<url>@<branch>``."""
        return f"git+{self.url}@{self.branch}"


def repository(root: Path) -> Repository:
    """``repository:`` of ``root/_config.yml``; ``ValueError`` unless its url is a GitHub repository."""
    config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8")) or {}
    entry = config.get("repository") or {}
    url = str(entry.get("url") or "")
    parsed = urlparse(url)
    parts = [part for part in parsed.path.split("/") if part]
    if parsed.scheme != "https" or parsed.netloc not in ("github.com", "www.github.com") or len(parts) != 2:
        raise ValueError(
            f"expected `repository: url:` in {root / '_config.yml'} to be https://github.com/<owner>/<repo> "
            f"(the Colab editions and links are built from it), got {url!r}"
        )
    return Repository(
        url=url,
        branch=str(entry.get("branch") or DEFAULT_BRANCH),
        owner=parts[0],
        name=parts[1].removesuffix(".git"),
        path_to_book=str(entry.get("path_to_book") or "").strip("/"),
    )
