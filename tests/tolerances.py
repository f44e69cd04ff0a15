"""How far two correct float32 BN implementations may differ: rounding, not a wrong formula."""


def rounding_tolerance(loc: float, scale: float) -> float:
    """Absolute tolerance for a normalized float32 output of inputs ~ N(loc, scale).

    float32 keeps only ``|loc| / scale * 2**-24`` of relative precision in the centred input, and
    two correct implementations (a BLAS product against a reduction, one thread count against
    another) round it differently; at |loc| / scale ~ 3,000 they differ by 0.7% (seen under
    OMP_NUM_THREADS=2). A wrong formula (axis, estimator, momentum) is off by far more.
    """
    return 2e-3 + 100 * max(1.0, abs(loc) / scale) * 2.0**-24
