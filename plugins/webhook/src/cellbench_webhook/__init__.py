"""cellbench notifier webhook: notifications POSTed as signed JSON to a URL."""
