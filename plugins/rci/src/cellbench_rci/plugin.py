"""Registration of the remote control interface with cellbench."""
