"""Speed: the fast BatchNorm, timings and profiles, and the same LeNet in PyTorch."""
