"""The README's and the docs' code blocks, as written, for the tests that run them in a fresh Python."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"

#: A Markdown link: [text](target), not an image.
LINK = re.compile(r"(?<!!)\[((?:[^\[\]]|\[[^\]]*\])*)\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^(#+) (.*)$", re.M)


def _without_code(text: str) -> str:
    """The text with its fenced code blocks blanked out, line for line, so a shell comment is no heading."""
    return re.sub(r"^```.*?^```$", lambda m: re.sub(r"[^\n]", " ", m.group(0)), text, flags=re.M | re.S)


def section(heading: str, path: Path = README, text: str | None = None) -> str:
    """The text under the first heading that contains ``heading``, up to the next heading of any level."""
    text = path.read_text() if text is None else text
    bare = _without_code(text)
    starts = [m for m in _HEADING.finditer(bare)]
    for i, match in enumerate(starts):
        if heading.lower() in match.group(2).replace("`", "").lower():
            end = starts[i + 1].start() if i + 1 < len(starts) else len(text)
            return text[match.end() + 1 : end]
    raise AssertionError(f"no heading with {heading!r} in {path.relative_to(ROOT)}")


def fenced_block(heading: str, language: str, text: str | None = None, path: Path = README) -> str:
    """The first ``language`` block in the section whose heading contains ``heading``, before the next heading.

    ``path`` is the Markdown file to read (the README unless told), ``text`` its text if already read.
    """
    body = section(heading, path, text)
    block = re.search(rf"^```{language}\n(.*?)^```$", body, re.M | re.S)
    assert block, f"no {language} block under the heading with {heading!r} in {path.relative_to(ROOT)}"
    return block.group(1)


def linked_page(topic: str) -> Path:
    """The one Markdown page the README links to for ``topic``.

    The links whose text names the topic count; if there are none, the links under a README heading that names
    it. They must all lead to one existing ``.md`` file of this repository (anchors aside).
    """
    text = README.read_text()
    named = [target for words, target in LINK.findall(text) if topic.lower() in words.replace("`", "").lower()]
    if not named:
        try:
            named = [target for _, target in LINK.findall(section(topic, README, text))]
        except AssertionError:
            named = []
    pages = {
        (README.parent / target.split("#")[0]).resolve()
        for target in named
        if not re.match(r"[a-z]+:", target) and target.split("#")[0].endswith(".md")
    }
    assert len(pages) == 1, f"the README links {topic!r} to {sorted(map(str, pages)) or 'no page'}, not to one page"
    (page,) = pages
    assert page.is_file() and ROOT in page.parents, f"the README's link for {topic!r} leads to {page}"
    return page


def readme_or_linked_block(heading: str, language: str) -> str:
    """The ``language`` block under a heading naming ``heading``: in the README, or else in the one docs page
    that the README links to for it."""
    text = README.read_text()
    try:
        return fenced_block(heading, language, text)
    except AssertionError:
        return fenced_block(heading, language, path=linked_page(heading))


#: Put before the "Using the pieces" block: once gluon_bn has loaded, its loader serves a real subset (the block
#: trains five epochs). It imports nothing, so the block's own first line is still the first import of MXNet.
ON_A_REAL_SUBSET = """
import sys


class _RealSubset:
    def find_spec(self, name, path=None, target=None):
        if name != "gluon_bn":
            return None
        sys.meta_path.remove(self)
        from importlib.machinery import PathFinder
        spec = PathFinder.find_spec(name, path)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            import functools
            module.load_data_fashion_mnist = functools.partial(module.load_data_fashion_mnist, num_train=1024,
                                                               num_test=512)
        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, _RealSubset())
"""

#: Put after the "Using the pieces" block: what it made, and whether MXNet loaded before gluon_bn did.
REPORT_PIECES = """
print("epochs", [e.epoch for e in history], "gamma", net[1].gamma.data().shape)
"""
