"""The README's code blocks, as written, for the tests that run them in a fresh Python."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def fenced_block(heading: str, language: str, text: str | None = None) -> str:
    """The first ``language`` block in the section whose heading contains ``heading``, before the next heading."""
    text = README.read_text() if text is None else text
    match = re.search(rf"^#+ [^\n]*{re.escape(heading)}[^\n]*\n(.*?)(?=^#+ |\Z)", text, re.M | re.S)
    assert match, f"no heading with {heading!r} in the README"
    block = re.search(rf"^```{language}\n(.*?)^```$", match.group(1), re.M | re.S)
    assert block, f"no {language} block under the heading with {heading!r}"
    return block.group(1)


#: Put before the "Using the pieces" block: once gluon_bn has loaded, its loader serves a real subset (the block
#: trains five epochs). It imports nothing, so the block's own first line is still the first import of MXNet.
ON_A_REAL_SUBSET = '''
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
'''

#: Put after the "Using the pieces" block: what it made, and whether MXNet loaded before gluon_bn did.
REPORT_PIECES = '''
print("epochs", [e.epoch for e in history], "gamma", net[1].gamma.data().shape)
'''
