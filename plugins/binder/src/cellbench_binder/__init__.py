"""cellbench climate chamber binder: simulated chamber (replace with your chamber)."""
