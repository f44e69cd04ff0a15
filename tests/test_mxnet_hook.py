"""The start-up hook: ``import mxnet`` first, and d2l's own MXNet chapters, work wherever gluon-bn is installed.

Every case runs in a fresh Python, as a user's would. On NumPy 1.23 nothing is missing, so each child first takes
away the names NumPy 2 removed: MXNet then fails to load exactly as it does on NumPy 2, unless the hook puts them
back (the control cases turn the hook off and see that failure).
"""

import importlib.metadata
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import _gluon_bn_mxnet_hook as hook

#: Takes away the NumPy names MXNet 1.9.1 reads at import and NumPy 2 removed (a no-op on NumPy 2).
AS_ON_NUMPY_2 = (
    "import numpy\n"
    "for name in ('PZERO', 'NZERO', 'PINF', 'NINF', 'NAN', 'NaN', 'Inf', 'alltrue', 'sometrue', 'product',"
    " 'round_', 'msort', 'in1d', 'trapz'):\n"
    "    vars(numpy).pop(name, None)\n"
)

ORDERS = {
    "mxnet first": "import mxnet as mx\nprint('sum', mx.nd.ones((2, 3)).sum().asscalar())\n",
    "d2l first": (
        "from d2l import mxnet as d2l\nfrom mxnet import np, npx\nnpx.set_np()\n"
        "print('sum', float(np.ones((2, 3)).sum()), d2l.try_gpu())\n"
    ),
    "gluon_bn first": "import gluon_bn\nimport mxnet as mx\nprint('sum', mx.nd.ones((2, 3)).sum().asscalar())\n",
}


def _python(code: str, *, hook_on: bool = True, env: dict | None = None, argv0: str | None = None):
    """``code`` in a new interpreter of this environment, with the start-up hook on or off."""
    child = {k: v for k, v in os.environ.items() if k != hook.DISABLE}
    child.update(env or {})
    if not hook_on:
        child[hook.DISABLE] = "1"
    command = [sys.executable, "-c", code] if argv0 is None else [sys.executable, "-c", code, argv0]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=child)


def test_the_install_puts_the_hook_and_its_start_up_file_at_the_top_of_site_packages():
    (installed,) = [
        d
        for d in importlib.metadata.distributions(path=[sysconfig.get_paths()["purelib"]])
        if d.metadata["Name"] == "gluon-bn"
    ]
    files = {f.name: f for f in installed.files}
    assert "_gluon_bn_mxnet_hook.py" in files and "gluon_bn_mxnet_hook.pth" in files
    line = files["gluon_bn_mxnet_hook.pth"].read_text()
    assert line.startswith("import ") and hook.DISABLE in line and "_gluon_bn_mxnet_hook" in line


def test_start_up_installs_the_hook_and_loads_neither_numpy_nor_mxnet():
    code = (
        "import sys\nprint(sorted(m for m in ('numpy', 'mxnet', 'gluon_bn') if m in sys.modules), "
        "any(getattr(f, 'gluon_bn_mxnet_hook', False) is True for f in sys.meta_path))"
    )
    assert _python(code).stdout.split() == ["[]", "True"]
    off = _python(code + "\nprint('_gluon_bn_mxnet_hook' in sys.modules)", hook_on=False)
    assert off.stdout.split() == ["[]", "False", "False"]


@pytest.mark.parametrize("order", ORDERS)
def test_import_order_does_not_matter(order):
    done = _python(AS_ON_NUMPY_2 + ORDERS[order])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "sum 6.0" in done.stdout


@pytest.mark.parametrize("order", ["mxnet first", "d2l first"])
def test_without_the_hook_mxnet_first_fails_as_on_numpy_2(order):
    done = _python(AS_ON_NUMPY_2 + ORDERS[order], hook_on=False)
    assert done.returncode != 0 and "AttributeError" in done.stderr and "numpy" in done.stderr


def test_the_hook_steps_aside_and_gluon_bn_reuses_its_compatibility_module():
    code = AS_ON_NUMPY_2 + (
        "import sys, mxnet\n"
        "print('hook', any(getattr(f, 'gluon_bn_mxnet_hook', False) is True for f in sys.meta_path))\n"
        "compat = sys.modules['gluon_bn.runtime.compat']\n"
        "import gluon_bn\n"
        "from gluon_bn.runtime import compat as again\n"
        "print('same', again is compat, 'PZERO' in compat.restored, compat.__file__.endswith('compat.py'))\n"
    )
    done = _python(code)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["hook", "False", "same", "True", "True", "True"]


@pytest.fixture(scope="module")
def cuda_build_without_cudnn(tmp_path_factory) -> Path:
    """A stand-in ``libmxnet.so`` linked, as MXNet's CUDA wheels are, against ``libcudnn.so.8``, which is absent."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    assert compiler, "a C compiler is needed to build the stand-in library (apt-get install gcc)"
    folder = tmp_path_factory.mktemp("cuda")
    (folder / "stub").mkdir()
    (folder / "cudnn.c").write_text("int cudnnGetVersion(void) { return 8000; }\n")
    (folder / "mxnet.c").write_text(
        "int cudnnGetVersion(void);\nint MXGetVersion(int *v) { *v = cudnnGetVersion(); return 0; }\n"
    )
    subprocess.run(
        [compiler, "-shared", "-fPIC", "-Wl,-soname,libcudnn.so.8", "-o", "stub/libcudnn.so.8", "cudnn.c"],
        cwd=folder,
        check=True,
    )
    subprocess.run(
        [compiler, "-shared", "-fPIC", "-o", "libmxnet.so", "mxnet.c", "-Lstub", "-l:libcudnn.so.8"],
        cwd=folder,
        check=True,
    )
    return folder / "libmxnet.so"


def test_a_cuda_build_missing_a_library_is_named_at_import(cuda_build_without_cudnn):
    env = {"MXNET_LIBRARY_PATH": str(cuda_build_without_cudnn)}
    done = _python("import mxnet", env=env)
    assert done.returncode == 1
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith(
            "_gluon_bn_mxnet_hook.MXNetUnavailable: this MXNet is a CUDA build and cannot load libcudnn.so.8 "
            "(cuDNN 8 for CUDA 11)"
        )
    )
    again = _python("import gluon_bn", env=env, hook_on=False)  # gluon_bn installs the hook itself
    assert "cannot load libcudnn.so.8 (cuDNN 8 for CUDA 11)" in again.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("command", [["gluon-bn"], ["python", "-m", "gluon_bn"]], ids=["gluon-bn", "python -m"])
def test_the_command_says_it_in_one_line_before_training(cuda_build_without_cudnn, tmp_path, command):
    executable = (
        [str(Path(sys.executable).with_name("gluon-bn"))]
        if command == ["gluon-bn"]
        else [sys.executable, "-m", "gluon_bn"]
    )
    env = {**os.environ, "MXNET_LIBRARY_PATH": str(cuda_build_without_cudnn)}
    done = subprocess.run(
        [*executable, "reproduce", "--quick", "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("gluon-bn: error: this MXNet is a CUDA build and cannot load libcudnn.so.8")
    assert "CUDA 11" in line and "pip install mxnet==1.9.1" in line
    assert not (tmp_path / "out").exists()


def test_only_a_cuda_library_gets_the_sentence():
    assert "the CUDA 11 runtime" in hook.explain_load_failure(
        OSError("libcudart.so.11.0: cannot open shared object file: No such file or directory")
    )
    assert hook.explain_load_failure(OSError("libgfortran.so.5: cannot open shared object file")) is None
    assert hook.explain_load_failure(ValueError("libcudnn.so.8")) is None


def test_no_mxnet_at_all_is_said_in_one_sentence():
    code = "import sys\nsys.modules['mxnet'] = None\nimport gluon_bn\n"
    done = _python(code)
    assert "MXNetUnavailable: gluon-bn needs MXNet 1.9.1, which is not installed" in done.stderr
    as_command = _python("import sys\nsys.argv[0] = 'gluon-bn'\n" + code.split("\n", 1)[1])
    assert as_command.returncode == 1
    (line,) = as_command.stderr.strip().splitlines()
    assert line.startswith("gluon-bn: error: gluon-bn needs MXNet 1.9.1, which is not installed: pip install")
