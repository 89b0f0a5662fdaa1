"""cellbench notifier webhook: writes events to a log (replace it)."""
