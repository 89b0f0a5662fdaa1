"""Remote control interface: ASCII commands over TCP and RS-232."""
