"""How MXNet is loaded and run here: NumPy names and the import hook, CPU threads, GPUs it can use, compiled graphs."""
