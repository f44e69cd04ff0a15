"""Makes ``import mxnet`` work in any order: the NumPy names MXNet 1.9.1 needs are put back just before it loads.

Installed with gluon-bn, this file is ``_gluon_bn_mxnet_hook`` at the top of site-packages, and only
there (importing anything inside ``gluon_bn`` would load MXNet): the start-up file ``gluon_bn_mxnet_hook.pth``
imports it and calls :func:`install`, which puts one finder on ``sys.meta_path``. It imports nothing
heavy: NumPy loads only when something imports ``mxnet``. Then the finder runs ``compat.py`` (as
``gluon_bn.runtime.compat``, so ``import gluon_bn`` later finds it done) and steps aside; a CUDA build
of MXNet that cannot find its CUDA 11 libraries fails with one sentence naming the library.
``GLUON_BN_NO_MXNET_HOOK=1`` keeps the start-up file from importing this module at all. ``import gluon_bn``
installs the hook too, for the same sentence on a CUDA build. Standard library only.
"""

import os
import sys

__all__ = ["CUDA_LIBRARIES", "DISABLE", "MXNetUnavailable", "explain_load_failure", "install", "installed", "uninstall"]

#: Set to 1 to keep the start-up file from installing the hook (``gluon_bn_mxnet_hook.pth`` reads it).
DISABLE = "GLUON_BN_NO_MXNET_HOOK"

#: The CUDA 11 libraries MXNet 1.9.1's CUDA builds (mxnet-cu110 to mxnet-cu117) load from the system.
CUDA_LIBRARIES = {
    "libcuda.so": "the NVIDIA driver",
    "libcudart.so.11.0": "the CUDA 11 runtime",
    "libcudnn.so.8": "cuDNN 8 for CUDA 11",
    "libnccl.so.2": "NCCL 2",
    "libcublas.so.11": "cuBLAS from CUDA 11",
    "libcublasLt.so.11": "cuBLAS from CUDA 11",
    "libcufft.so.10": "cuFFT from CUDA 11",
    "libcurand.so.10": "cuRAND from CUDA 11",
    "libcusolver.so.11": "cuSOLVER from CUDA 11",
    "libcusparse.so.11": "cuSPARSE from CUDA 11",
    "libnvrtc.so.11": "NVRTC from CUDA 11",
}


class MXNetUnavailable(ImportError):
    """MXNet is installed but cannot load on this system; the message names the cause and the fix."""


def explain_load_failure(exc: BaseException) -> str | None:
    """One sentence for an MXNet load that failed on a missing CUDA library, or None for any other failure."""
    import re  # here, not at start-up, where it would cost every Python milliseconds

    match = re.search(r"(lib[\w+-]+\.so(?:\.\d+)*)", str(exc))
    if not isinstance(exc, OSError) or match is None:
        return None
    library = match.group(1)
    what = next((text for name, text in CUDA_LIBRARIES.items() if library.startswith(name)), None)
    if what is None:
        return None
    return (
        f"this MXNet is a CUDA build and cannot load {library} ({what}): MXNet 1.9.1's CUDA wheels need "
        "CUDA 11 and cuDNN 8 installed on the system and an NVIDIA GPU from Maxwell to Ada; install those "
        "libraries (and put them on LD_LIBRARY_PATH), or use the CPU build: pip uninstall -y "
        "$(pip list 2>/dev/null | grep -o '^mxnet-cu[0-9]*') && pip install mxnet==1.9.1"
    )


def _compat_path() -> str | None:
    """Where the installed gluon_bn's ``compat.py`` is, found without importing gluon_bn."""
    from importlib.machinery import PathFinder

    spec = PathFinder.find_spec("gluon_bn")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "runtime", "compat.py")
    return path if os.path.isfile(path) else None


def _run_compat() -> None:
    """Run ``compat.py`` once, registered under its own name so that ``import gluon_bn`` reuses it."""
    name = "gluon_bn.runtime.compat"
    path = None if name in sys.modules else _compat_path()
    if path is None:
        return
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise


class _ExplainingLoader:
    """MXNet's own loader, with a failure to load a CUDA library said in one sentence."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        try:
            self.loader.exec_module(module)
        except OSError as exc:
            message = explain_load_failure(exc)
            if message is None:
                raise
            raise MXNetUnavailable(message) from exc

    def __getattr__(self, name):
        return getattr(self.loader, name)


class _BeforeMXNet:
    """A ``sys.meta_path`` finder that acts once, when ``mxnet`` is first imported, then steps aside."""

    gluon_bn_mxnet_hook = True  # the mark of either copy of this module (site-packages' and gluon_bn's)

    def find_spec(self, name, path=None, target=None):
        if name != "mxnet":
            return None
        uninstall()
        _run_compat()
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _ExplainingLoader(spec.loader)
        return spec


def installed() -> bool:
    """Whether the hook is waiting for ``import mxnet``."""
    return any(_is_hook(finder) for finder in sys.meta_path)


def _is_hook(finder) -> bool:
    return getattr(finder, "gluon_bn_mxnet_hook", False) is True


def install() -> None:
    """Wait for ``import mxnet``, unless it already happened or a hook is waiting already."""
    if "mxnet" in sys.modules or installed():
        return
    sys.meta_path.insert(0, _BeforeMXNet())


def uninstall() -> None:
    """Remove the hook from ``sys.meta_path``."""
    sys.meta_path[:] = [finder for finder in sys.meta_path if not _is_hook(finder)]
