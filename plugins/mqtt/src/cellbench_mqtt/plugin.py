"""Registers the notifier mqtt with cellbench.

cellbench imports this module at every start, so it stays light: it names the factory as a
"module:attr" string, which is imported only when a station uses the notifier.
"""

from cellbench_sdk import Descriptor, Kind, hookimpl

from cellbench_mqtt.settings import MqttSettings


@hookimpl
def cellbench_notifiers() -> list[Descriptor]:
    """The notifier of this plugin."""
    return [
        Descriptor(
            Kind.NOTIFIER,
            # The name station files use; unique among the notifiers of every plugin.
            "mqtt",
            # The factory: called with the validated settings, returns the notifier.
            "cellbench_mqtt.notifier:MqttNotifier",
            # One line for `cellbench plugins`: say what it drives or does.
            "writes events to a log (replace it)",
            MqttSettings,
        )
    ]
