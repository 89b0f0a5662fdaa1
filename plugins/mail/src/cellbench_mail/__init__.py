"""cellbench notifier mail: notifications as mail over SMTP with STARTTLS or TLS."""
