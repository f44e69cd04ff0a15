"""Side by side with ``nn.BatchNorm``: a float64 reference, layer checks, BN state, drift between twins."""
