"""GPUs MXNet 1.9.1 cannot run on (compute capability 9.0 and up, or below 5.0) are refused in one sentence,
before any training. A GPU is simulated at the boundary: MXNet's GPU count and ``compute_capability``."""

import mxnet as mx
import pytest

import gluon_bn
from gluon_bn import cli
from gluon_bn.chapter import training
from gluon_bn.errors import UsageError
from gluon_bn.runtime import gpus
from gluon_bn.runtime.devices import resolve_context

HOPPER, ADA, AMPERE, KEPLER = (9, 0), (8, 9), (8, 6), (3, 7)

FIX = (
    "MXNet 1.9.1's CUDA builds carry kernels for sm_50 to sm_86 and no PTX, so no operator can run on it; "
    "use --ctx cpu (mx.cpu() in code), or a GPU from Maxwell to Ada (compute capability 5.0 to 8.9) "
    "with CUDA 11 libraries"
)


@pytest.fixture
def simulate(monkeypatch):
    """Make MXNet see one GPU per capability given, ``gpu(i)`` having the i-th."""

    def gpus_with(*capabilities):
        monkeypatch.setattr(mx.context, "num_gpus", lambda: len(capabilities))
        monkeypatch.setattr(gpus, "compute_capability", lambda device_id: capabilities[device_id])

    return gpus_with


def test_compute_capability_reads_mxnets_number_as_major_and_minor(monkeypatch):
    asked = []
    monkeypatch.setattr(mx.util, "get_cuda_compute_capability", lambda ctx: asked.append(ctx) or 86)
    assert gpus.compute_capability(1) == (8, 6) and asked == [mx.gpu(1)]


@pytest.mark.parametrize(
    "capability, generation",
    [
        (HOPPER, "Hopper or newer"),
        ((10, 0), "Hopper or newer"),
        ((12, 0), "Hopper or newer"),
        (KEPLER, "Kepler or older"),
        ((2, 1), "Kepler or older"),
    ],
    ids=["9.0", "10.0", "12.0", "3.7", "2.1"],
)
def test_a_gpu_without_kernels_is_one_sentence_naming_cause_and_fix(capability, generation, simulate):
    simulate(capability)
    major, minor = capability
    assert gpus.unusable_reason(0) == f"gpu(0) has compute capability {major}.{minor} ({generation}): {FIX}"


@pytest.mark.parametrize(
    "capability", [(5, 0), (6, 1), (7, 5), (8, 0), AMPERE, ADA], ids=["5.0", "6.1", "7.5", "8.0", "8.6", "8.9"]
)
def test_maxwell_to_ada_can_run_mxnets_kernels(capability, simulate):
    simulate(capability)
    assert gpus.unusable_reason(0) is None
    gpus.check_gpu(mx.gpu(0))


def test_an_unreadable_capability_warns_and_lets_mxnet_try(monkeypatch):
    def no_libcuda(device_id):
        raise OSError("could not load any of: libcuda.so libcuda.dylib cuda.dll")

    monkeypatch.setattr(gpus, "compute_capability", no_libcuda)
    with pytest.warns(RuntimeWarning, match=r"gpu\(0\): cannot read its compute capability \(could not load"):
        assert gpus.unusable_reason(0) is None


def test_check_gpu_raises_the_sentence_and_passes_cpus(simulate):
    simulate(HOPPER)
    with pytest.raises(UsageError, match=r"^gpu\(0\) has compute capability 9\.0 \(Hopper or newer\)") as raised:
        gpus.check_gpu(mx.gpu(0))
    assert raised.value.exit_code == 2
    gpus.check_gpu(mx.cpu(0))


@pytest.mark.parametrize("name", ["gpu", "auto", "gpu:0", "gpu:0,gpu:1"])
def test_resolve_context_refuses_a_hopper_and_never_falls_back_to_the_cpu(name, simulate):
    simulate(HOPPER, HOPPER)
    with pytest.raises(UsageError, match=r"^gpu\(0\) has compute capability 9\.0"):
        resolve_context(name)


def test_every_listed_gpu_is_checked(simulate):
    simulate(AMPERE, HOPPER)
    with pytest.raises(UsageError, match=r"^gpu\(1\) has compute capability 9\.0"):
        resolve_context("gpu:0,gpu:1")
    assert resolve_context("gpu:0") == mx.gpu(0)


@pytest.mark.parametrize(
    "name, expected",
    [("gpu", mx.gpu(0)), ("auto", mx.gpu(0)), ("gpu:0,gpu:1", [mx.gpu(0), mx.gpu(1)])],
    ids=["gpu", "auto", "list"],
)
def test_resolve_context_keeps_gpus_that_can_run(name, expected, simulate):
    simulate(ADA, AMPERE)
    assert resolve_context(name) == expected


def test_try_gpu_is_one_checking_function_everywhere(simulate):
    assert gluon_bn.try_gpu is training.try_gpu is gpus.try_gpu
    simulate(HOPPER)
    with pytest.raises(UsageError, match=r"^gpu\(0\) has compute capability 9\.0"):
        gluon_bn.try_gpu()
    simulate(AMPERE)
    assert gluon_bn.try_gpu() == mx.gpu(0)


def test_try_gpu_without_that_gpu_is_the_cpu(simulate, monkeypatch):
    def never_read(device_id):
        raise AssertionError("no GPU to read")

    simulate()
    monkeypatch.setattr(gpus, "compute_capability", never_read)
    assert gluon_bn.try_gpu() == mx.cpu() and resolve_context("auto") == mx.cpu()
    simulate(AMPERE)
    assert gluon_bn.try_gpu(1) == mx.cpu()


@pytest.mark.parametrize("ctx", ["gpu", "auto", "gpu:0,gpu:1"])
def test_the_cli_refuses_a_hopper_in_one_line_before_training(ctx, simulate, tmp_path, capsys):
    simulate(HOPPER, HOPPER)
    out = tmp_path / "out"
    assert cli.main(["reproduce", "--quick", "--ctx", ctx, "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [f"gluon-bn: error: gpu(0) has compute capability 9.0 (Hopper or newer): {FIX}"]
    assert "training on" not in captured.out and not out.exists()
