"""cellbench climate chamber simserv: simulated chamber (replace with your chamber)."""
