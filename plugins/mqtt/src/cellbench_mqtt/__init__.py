"""cellbench notifier mqtt: writes events to a log (replace it)."""
