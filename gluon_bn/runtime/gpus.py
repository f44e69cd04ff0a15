"""Whether MXNet 1.9.1 can run on a GPU: its CUDA builds carry kernels for sm_50 to sm_86 and no PTX.

The mxnet-cu110 to mxnet-cu117 wheels hold compiled kernels for compute capability 5.0, 6.0, 7.0,
8.0 and 8.6 only. A kernel built for X.y runs on X.z with z >= y, so a GPU from Maxwell (5.x) to
Ada (8.9) can run them; with no PTX to compile for a newer GPU, Hopper (9.0), Blackwell (10.x, 12.x)
and anything later fail at the first operator with CUDA error 209 ("no kernel image is available"),
as does anything before Maxwell. Checked here from the numbers alone: untested on a real GPU.
"""

from __future__ import annotations

import warnings

import mxnet as mx

from ..errors import UsageError

__all__ = ["NEWEST", "OLDEST", "check_gpu", "compute_capability", "try_gpu", "unusable_reason"]

#: The oldest and newest compute capability MXNet 1.9.1's CUDA kernels run on (Maxwell and Ada).
OLDEST, NEWEST = (5, 0), (8, 9)


def compute_capability(device_id: int) -> tuple[int, int]:
    """``gpu(device_id)``'s compute capability as (major, minor), e.g. (8, 6).

    The one place gluon-bn reads the GPU's hardware, so the one place tests replace to simulate a GPU.
    """
    number = mx.util.get_cuda_compute_capability(mx.gpu(device_id))
    return divmod(number, 10)


def _generation(capability: tuple[int, int]) -> str:
    return "Hopper or newer" if capability > NEWEST else "Kepler or older"


def unusable_reason(device_id: int) -> str | None:
    """None when MXNet 1.9.1's kernels can run on ``gpu(device_id)``; else one sentence naming the cause and the fix.

    A capability that cannot be read (no ``libcuda.so`` to load) is not refused: MXNet is left to try, with a warning.
    """
    try:
        capability = compute_capability(device_id)
    except (OSError, RuntimeError) as exc:
        warnings.warn(
            f"gpu({device_id}): cannot read its compute capability ({exc}); MXNet 1.9.1 runs only on "
            f"{OLDEST[0]}.{OLDEST[1]} to {NEWEST[0]}.{NEWEST[1]}",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
    if OLDEST <= capability <= NEWEST:
        return None
    return (
        f"gpu({device_id}) has compute capability {capability[0]}.{capability[1]} ({_generation(capability)}): "
        "MXNet 1.9.1's CUDA builds carry kernels for sm_50 to sm_86 and no PTX, so no operator can run on it; "
        "use --ctx cpu (mx.cpu() in code), or a GPU from Maxwell to Ada (compute capability 5.0 to 8.9) "
        "with CUDA 11 libraries"
    )


def check_gpu(ctx: mx.Context) -> None:
    """Raise ``UsageError`` with the reason when ``ctx`` is a GPU MXNet's kernels cannot run on; CPUs pass."""
    if ctx.device_type != "gpu":
        return
    reason = unusable_reason(ctx.device_id)
    if reason is not None:
        raise UsageError(reason)


def try_gpu(i: int = 0) -> mx.Context:
    """d2l's ``try_gpu``: gpu(i) when MXNet sees it, else cpu(); a GPU MXNet cannot run on is refused, not used."""
    if mx.context.num_gpus() < i + 1:
        return mx.cpu()
    check_gpu(mx.gpu(i))
    return mx.gpu(i)
