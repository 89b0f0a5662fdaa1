"""cellbench simulated station: equivalent-circuit cells behind simulated channels, a climate
chamber and an OSI device, all able to run on a virtual clock."""
