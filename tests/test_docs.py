"""Every Markdown document the repository cites is in the repository.

Code, configs and tests cite ``docs/reference.md §N`` and ``docs/pitfalls.md <ID>``; a
citation of a file that is not in the tree (for example a reference kept outside the
repository) leaves a newcomer unable to check where a pinned number comes from.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
THIS_FILE = Path(__file__).resolve().relative_to(ROOT).as_posix()

#: Where citations can appear: top-level files and these folders.
SCANNED_DIRS = ("conf", "docs", "notebooks", "src", "tests")
SCANNED_SUFFIXES = {".py", ".yaml", ".yml", ".md", ".ipynb", ".toml", ".cfg", ".txt", ""}
SKIPPED_PARTS = {".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache", "outputs"}

#: Mentions of ``*.md`` names that are not citations, with the reason.
NOT_CITATIONS = {
    # This file's own examples and the names it looks for.
    *((THIS_FILE, name) for name in ("readme.md", "reference.md", "pitfalls.md", "NOTES.md")),
    # A file the test writes into a temporary folder to check that it is not an image.
    ("tests/test_predict.py", "readme.md"),
}

# A file name or relative path ending in ".md"; URLs are filtered out below.
MD_MENTION = re.compile(r"[\w./:-]*[\w-]\.md\b")
# The section sign or a pitfall ID right after a citation of the docs.
SECTION = re.compile(r"(reference\.md)((?:,? §\d+(?:\.\d+)?(?:-\d+)?)+)")
PITFALL_ID = re.compile(r"pitfalls\.md ([A-L]\d?)\b")


def _repository_files(root: Path) -> list[Path]:
    """Tracked and untracked-but-not-ignored files (git), else every file under ``root``."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):  # not a git checkout (e.g. an sdist)
        return [p for p in root.rglob("*") if p.is_file()]
    return [root / name for name in listed if (root / name).is_file()]


def scanned_files(root: Path) -> list[Path]:
    """Text files of the repository that may cite documents, sorted."""
    files = []
    for path in _repository_files(root):
        rel_parts = path.relative_to(root).parts
        in_scope = len(rel_parts) == 1 or rel_parts[0] in SCANNED_DIRS
        if (
            in_scope
            and path.suffix in SCANNED_SUFFIXES
            and not SKIPPED_PARTS.intersection(rel_parts)
        ):
            files.append(path)
    return sorted(files)


def dangling_citations(root: Path) -> list[str]:
    """``file:line: name`` for every cited ``*.md`` that resolves to no file in ``root``."""
    problems = []
    for path in scanned_files(root):
        rel = path.relative_to(root).as_posix()
        text = path.read_text(encoding="utf-8", errors="replace")
        for lineno, line in enumerate(text.splitlines(), 1):
            for match in MD_MENTION.finditer(line):
                name = match.group(0).strip(".:")
                if "://" in name or (rel, name) in NOT_CITATIONS:
                    continue
                candidates = (root / name, path.parent / name)
                if not any(c.is_file() and c.resolve().is_relative_to(root) for c in candidates):
                    problems.append(f"{rel}:{lineno}: {name}")
    return problems


def test_every_cited_document_is_in_the_repository() -> None:
    problems = dangling_citations(ROOT)
    assert not problems, "cited documents missing from the repository:\n" + "\n".join(problems)


def test_the_check_finds_a_dangling_citation(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "reference.md").write_text("# ref\n")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text(
        "# docs/reference.md §2\n# NOTES.md §3\n# see https://example.org/x.md\n"
    )
    assert dangling_citations(tmp_path) == ["src/a.py:2: NOTES.md"]


def _headings(doc: str) -> str:
    return "\n".join(line for line in doc.splitlines() if line.startswith("#"))


@pytest.mark.parametrize("kind", ["section", "pitfall"])
def test_cited_sections_and_pitfall_ids_exist(kind: str) -> None:
    reference = (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")
    pitfalls = (ROOT / "docs" / "pitfalls.md").read_text(encoding="utf-8")
    sections = set(re.findall(r"^## (\d+)\.", reference, re.M))
    items = {f"3.{n}" for n in re.findall(r"^(\d+)\. ", reference.split("## 3.")[1], re.M)}
    ids = set(re.findall(r"^\*\*([A-L]\d)\.", pitfalls, re.M))
    ids |= set(re.findall(r"^## ([A-L])\.", pitfalls, re.M))
    missing = []
    for path in scanned_files(ROOT):
        text = path.read_text(encoding="utf-8", errors="replace")
        if kind == "section":
            for _, cited in SECTION.findall(text):
                for ref in re.findall(r"§(\d+(?:\.\d+)?)(?:-(\d+))?", cited):
                    for number in filter(None, ref):
                        if number not in sections | items:
                            missing.append(f"{path.relative_to(ROOT)}: §{number}")
        else:
            for pid in PITFALL_ID.findall(text):
                if pid not in ids:
                    missing.append(f"{path.relative_to(ROOT)}: {pid}")
    assert not missing, f"citations of {kind}s that the docs do not have:\n" + "\n".join(missing)
