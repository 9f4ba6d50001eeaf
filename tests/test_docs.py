"""The documentation holds together: every relative link of README.md, docs/ and studies/README.md
reaches a file (and a heading, where it names one), every results table equals the file under
benchmarks/results/ it is written from, and the README stays a five-minute read."""

import re
from pathlib import Path

import pytest

from studies import docs_tables

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", ROOT / "studies" / "README.md", *(ROOT / "docs").glob("*.md")])
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return {slug(m.group(1)) for m in re.finditer(r"^#+\s+(.*)$", text, re.M)}


def links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    return [m.group(1) or m.group(2) for m in LINK.finditer(text)]


def test_the_slug_rule():
    assert slug("8. The shipped configs and the paper's tables") == "8-the-shipped-configs-and-the-papers-tables"
    assert slug("Status on GPUs") == "status-on-gpus"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_reaches_its_file_and_heading(page):
    broken = []
    for target in links(page):
        if re.match(r"[a-z]+://|mailto:", target):
            continue
        path, _, anchor = target.partition("#")
        destination = (page.parent / path).resolve() if path else page
        if not destination.exists():
            broken.append(f"{target}: no such file")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            broken.append(f"{target}: no heading #{anchor}")
    assert broken == []


def test_every_results_table_is_written_from_its_file():
    assert docs_tables.stale_blocks() == []


def test_the_writer_rewrites_a_stale_block_and_reads_parts():
    results = "benchmarks/results/cpu_op.md"
    stale = f"<!-- table: {results} -->\nold numbers\n<!-- end table -->\n"
    assert docs_tables.rewrite(stale) == f"<!-- table: {results} -->\n{docs_tables.table_text(results, None)}<!-- end table -->\n"
    first = docs_tables.table_text(results, "1")
    assert first.startswith("contrastive MIL, CPU") and "|" not in first


def test_the_readme_is_a_five_minute_read():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 250


DIARY = [r"\bthe issue\b", r"\bissue \d", r"\b(until|since) (November|December)\b", r"\bearlier session\b",
         r"\bAVX2 machine\b", r"\bAVX512 machine\b", r"\bdevelopment machine\b", r"\bexperiment patch"]


@pytest.mark.parametrize("page", [*PAGES, ROOT / "CHANGELOG.md"], ids=lambda p: str(p.relative_to(ROOT)))
def test_no_diary_text(page):
    """Pages say what is, not who ran what when (a results table's machine and date columns excepted)."""
    text = page.read_text(encoding="utf-8")
    assert [phrase for phrase in DIARY if re.search(phrase, text, re.I)] == []
