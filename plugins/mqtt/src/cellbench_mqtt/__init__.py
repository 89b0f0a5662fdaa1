"""cellbench notifier mqtt: channel states, live samples and events to an MQTT broker."""
