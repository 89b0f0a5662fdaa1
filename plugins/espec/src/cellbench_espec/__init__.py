"""cellbench climate chamber: ESPEC chambers (P300 / SCP-220 controllers)."""
