"""How MXNet is loaded and run here: NumPy names, CPU threads, compiled graphs. Nothing here imports the rest."""
