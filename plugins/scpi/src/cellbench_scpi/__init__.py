"""cellbench channel driver scpi: simulated channels (replace with your cycler)."""
