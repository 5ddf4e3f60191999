"""The README and docs/: every relative link resolves (files and #anchors, by GitHub's rules), and the README's
quick start is what CI runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def prose(markdown: str) -> str:
    """The text outside fenced code blocks: a link shown inside ``` is an example, not a link."""
    return FENCE.sub("", markdown)


def github_anchor(heading: str) -> str:
    """The id GitHub gives a heading: its text (code and link markup dropped), lower case, every character but
    letters, digits, `_`, `-` and spaces removed, spaces turned into `-`."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = text.replace("`", "").replace("*", "")
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading's anchor on a page; a repeated heading gets -1, -2, ... as on GitHub."""
    found: set[str] = set()
    for heading in HEADING.findall(prose(page.read_text(encoding="utf-8"))):
        anchor = base = github_anchor(heading)
        count = 0
        while anchor in found:
            count += 1
            anchor = f"{base}-{count}"
        found.add(anchor)
    return found


def broken_links(page: Path) -> list[str]:
    """Each relative link on `page` whose file, or #anchor in a Markdown file, does not exist."""
    text = INLINE_CODE.sub("", prose(page.read_text(encoding="utf-8")))
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:: not relative
            continue
        name, _, anchor = target.partition("#")
        linked = (page.parent / name).resolve() if name else page
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no heading with anchor #{anchor} in {linked.name}")
    return broken


@pytest.mark.parametrize(("heading", "anchor"), [
    ("Sweeps: select on validation, report test", "sweeps-select-on-validation-report-test"),
    ('What "same numbers" promises', "what-same-numbers-promises"),
    ("The article's recipe", "the-articles-recipe"),
    ("`reports/report.html`, section by section", "reportsreporthtml-section-by-section"),
    ("On a cluster (SLURM)", "on-a-cluster-slurm"),
    ("Snake_case and UPPER", "snake_case-and-upper"),
])
def test_anchors_follow_githubs_rules(heading, anchor):
    assert github_anchor(heading) == anchor


def test_the_link_checker_finds_a_missing_file_and_a_missing_anchor(tmp_path):
    (tmp_path / "other.md").write_text("# A title\n\n## A title\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text("[ok](other.md#a-title-1) [gone](missing.md) [no](other.md#b) [self](#here)\n\n## Here\n"
                    "`[code](missing.md)`\n```\n[example](missing.md)\n```\n[web](https://example.org)\n",
                    encoding="utf-8")
    assert broken_links(page) == ["missing.md: no such file", "other.md#b: no heading with anchor #b in other.md"]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(REPO_ROOT).as_posix())
def test_every_relative_link_resolves(page):
    assert broken_links(page) == []


def test_the_readme_links_every_page_of_docs():
    linked = {target.partition("#")[0] for target in LINK.findall(prose((REPO_ROOT / "README.md").read_text()))}
    assert {f"docs/{page.name}" for page in PAGES[1:]} <= linked


def test_the_readme_is_a_front_page():
    assert len((REPO_ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 200


def quick_start_commands() -> list[str]:
    """The commands of the README's Quick start block, without their comments."""
    section = (REPO_ROOT / "README.md").read_text(encoding="utf-8").split("## Quick start", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL).group(1)
    return [line.split("   #")[0].strip() for line in block.splitlines() if line.strip()]


def test_the_readme_installs_and_tests_exactly_as_ci_does():
    ci = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    install = next(command for command in quick_start_commands() if command.startswith("pip install"))
    ci_install = ci.split("# The README's install command:\n", 1)[1].splitlines()[0]
    ci_test = ci.split("# The README's test command:\n", 1)[1].splitlines()[0]
    assert install == ci_install
    assert ci_test in quick_start_commands()
    assert quick_start_commands()[-1] == ci_test
