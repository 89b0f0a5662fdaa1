"""cellbench OSI device scpi-logger: simulated signals (replace with your device)."""
