"""The README is a front page and docs/ holds the rest: every link and every named path leads somewhere, the front
page stays short and links every page, and dated measurements live in docs/measurements.md only."""

import re
from pathlib import Path

import pytest
from readme_blocks import DOCS, LINK, README, ROOT, _without_code

PAGES = [README, *sorted(DOCS.glob("*.md"))]
MEASUREMENTS = DOCS / "measurements.md"
MAX_README_LINES = 250
#: Repository folders a backticked path may start with; such a path is named from the repository's root.
TOP = r"(?:gluon_bn|notebooks|benchmarks|tests|scripts|docs|\.ci)"
DATE = re.compile(r"\b20\d\d-[01]\d-[0-3]\d\b")
#: Dates that are names, not measurements: a Fashion-MNIST release as the loader and the records call it.
DATES_THAT_ARE_NAMES = {"2017-08-26": ("gluon_bn/chapter/fashion_mnist.py", '"2017-08-26": {')}


def _name(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation (backticks too) dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for heading in re.findall(r"^#+ (.*)$", _without_code(page.read_text()), re.M):
        slug = _slug(heading)
        anchors.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return anchors


def _links(page: Path) -> list[str]:
    """Every Markdown link's target outside code (a code block's brackets are no link)."""
    text = re.sub(r"`[^`\n]*`", lambda m: m.group(0) if "](" in m.group(0) else "``", _without_code(page.read_text()))
    return [target for _, target in LINK.findall(text)]


def test_there_are_docs_pages_and_links_to_check():
    assert len(PAGES) > 10 and MEASUREMENTS in PAGES
    assert len(_links(README)) > 20 and sum(len(_links(page)) for page in PAGES) > 80


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_every_relative_link_leads_to_a_file_and_every_anchor_to_a_heading(page):
    broken = []
    links = _links(page)
    for target in links:
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ... are not this repository's
            continue
        path, _, anchor = target.partition("#")
        destination = (page.parent / path).resolve() if path else page
        if ROOT not in destination.parents or not destination.exists():
            broken.append(f"{target}: no such file")
        elif anchor and (destination.suffix != ".md" or anchor not in _anchors(destination)):
            broken.append(f"{target}: no heading #{anchor} in {_name(destination)}")
    assert broken == []


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_every_repository_path_a_page_names_exists(page):
    text = page.read_text()
    named = set(re.findall(rf"`({TOP}/[^`\s]*)`", text))  # backticked: `gluon_bn/chapter/layers.py`, `tests/`
    named |= set(re.findall(r"(?<![\w/.])(docs/[\w-]+\.md)\b", text))  # docs pages, also inside code blocks
    # the layout table's rows: a folder, then the files of it that its second cell names
    for folder, files in re.findall(rf"^\| `({TOP}/(?:[\w]+/)*)`[^|]*\| ([^|]*) \|", text, re.M):
        named |= {folder + name for name in re.findall(r"`([\w]+\.(?:py|sh))`", files)}
    missing = sorted(p for p in named if not (ROOT / p).exists())
    assert missing == []


def test_the_layout_table_names_the_files_of_each_folder():
    """The row check above has something to check: the layout names the chapter's files in its row."""
    row = re.search(r"^\| `gluon_bn/chapter/` \|([^|]*)\|", (DOCS / "layout.md").read_text(), re.M)
    assert row and len(re.findall(r"`[\w]+\.py`", row.group(1))) >= 5


def test_the_readme_is_a_front_page_of_at_most_250_lines():
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines"


def test_the_readme_links_every_docs_page():
    linked = {(ROOT / target.partition("#")[0]).resolve() for target in _links(README)}
    assert sorted(_name(p) for p in PAGES[1:] if p not in linked) == []


@pytest.mark.parametrize("page", [p for p in PAGES if p != MEASUREMENTS], ids=_name)
def test_reference_pages_carry_no_dates_measurements_does(page):
    """A dated measurement belongs in docs/measurements.md; a reference page links there."""
    dates = [d for d in DATE.findall(page.read_text()) if d not in DATES_THAT_ARE_NAMES]
    assert dates == [], f"{_name(page)} names {dates}: move them to docs/measurements.md"


def test_a_date_that_is_a_name_is_still_that_name_in_the_code():
    for path, key in DATES_THAT_ARE_NAMES.values():
        assert key in (ROOT / path).read_text()


def test_every_measurement_names_its_date():
    text = MEASUREMENTS.read_text()
    sections = re.split(r"^## ", _without_code(text), flags=re.M)[1:]
    topics = {s.split("\n", 1)[0]: s for s in sections if not s.startswith("Machines")}
    assert len(topics) >= 8
    assert sorted(topic for topic, body in topics.items() if not DATE.search(body)) == []


def test_marker_blocks_are_whole_and_in_one_file_each():
    """``<!-- name:begin -->`` ... ``<!-- name:end -->``: opened once, closed once, after it, in one page."""
    where: dict[str, list[str]] = {}
    for page in PAGES:
        text = page.read_text()
        for name in set(re.findall(r"<!-- ([\w-]+):begin -->", text)):
            assert text.count(f"<!-- {name}:begin -->") == 1 == text.count(f"<!-- {name}:end -->"), name
            assert text.index(f"<!-- {name}:begin -->") < text.index(f"<!-- {name}:end -->"), name
            where.setdefault(name, []).append(_name(page))
        assert set(re.findall(r"<!-- ([\w-]+):end -->", text)) <= set(re.findall(r"<!-- ([\w-]+):begin -->", text))
    assert {name: pages for name, pages in where.items() if len(pages) > 1} == {}
    assert {"results", "compare", "exercises", "devices", "machines", "bench"} <= set(where)
