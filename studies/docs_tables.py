"""Writes the results tables of README.md and docs/ from their files under benchmarks/results/.

    python -m studies.docs_tables [--check]

A table in a page is a block between two markers that name its file (and optionally which of the
file's paragraphs, counting from 1, blank-line separated):

    <!-- table: benchmarks/results/cpu_op.md -->
    ...written from the file...
    <!-- end table -->

    <!-- table: benchmarks/results/synthetic_test.md part=3 -->

Rerunning a study's command rewrites its file; this command then rewrites every block from the
files. ``--check`` changes nothing and lists the blocks that differ from their files (the test
suite runs it, so a page cannot drift from its numbers).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = ("README.md", "docs/*.md")
BLOCK = re.compile(r"(<!-- table: (?P<file>\S+)(?: part=(?P<part>\d+))? -->\n)(?P<body>.*?)(<!-- end table -->)", re.S)


def pages() -> list[Path]:
    return sorted({path for pattern in PAGES for path in ROOT.glob(pattern)})


def table_text(file: str, part: str | None) -> str:
    """The text a block holds: the file, or its ``part``-th paragraph."""
    path = ROOT / file
    if not path.is_file():
        raise FileNotFoundError(f"results file {file} named by a table marker does not exist")
    text = path.read_text(encoding="utf-8").strip("\n")
    if part is not None:
        paragraphs = [p for p in re.split(r"\n\s*\n", text) if p.strip()]
        index = int(part)
        if not 1 <= index <= len(paragraphs):
            raise ValueError(f"{file} has {len(paragraphs)} paragraphs; a marker asks for part {index}")
        text = paragraphs[index - 1]
    return text + "\n"


def rewrite(page_text: str, missing: list[str] | None = None) -> str:
    """The page with every block written from its file; a block whose file does not exist yet is left
    as it is and its file added to ``missing`` (when given; else the FileNotFoundError is raised)."""
    def block(match: re.Match) -> str:
        try:
            return match.group(1) + table_text(match.group("file"), match.group("part")) + match.group(5)
        except FileNotFoundError:
            if missing is None:
                raise
            missing.append(match.group("file"))
            return match.group(0)

    return BLOCK.sub(block, page_text)


def stale_blocks() -> list[str]:
    """'page: file' for every block that differs from its file."""
    stale = []
    for page in pages():
        text = page.read_text(encoding="utf-8")
        for match in BLOCK.finditer(text):
            try:
                expected = table_text(match.group("file"), match.group("part"))
            except FileNotFoundError:
                stale.append(f"{page.relative_to(ROOT)}: {match.group('file')} (no such file)")
                continue
            if match.group("body") != expected:
                stale.append(f"{page.relative_to(ROOT)}: {match.group('file')}")
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studies.docs_tables", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="list stale blocks, change nothing (exit 1 if any)")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_blocks()
        for line in stale:
            print(f"stale: {line}")
        return 1 if stale else 0
    missing: list[str] = []
    for page in pages():
        text = page.read_text(encoding="utf-8")
        new = rewrite(text, missing)
        if new != text:
            temporary = page.with_name(page.name + ".tmp")
            temporary.write_text(new, encoding="utf-8")
            temporary.replace(page)
            print(f"rewrote {page.relative_to(ROOT)}")
    for file in sorted(set(missing)):
        print(f"not written yet: {file} (its blocks are left as they are)")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
