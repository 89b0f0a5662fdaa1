"""Registers the MQTT notifier with cellbench (the factory is imported only when a station
uses it)."""

from cellbench_mqtt.settings import MqttSettings
from cellbench_sdk import Descriptor, Kind, hookimpl


@hookimpl
def cellbench_notifiers() -> list[Descriptor]:
    """The MQTT notifier."""
    return [Descriptor(Kind.NOTIFIER, "mqtt", "cellbench_mqtt.notifier:MqttNotifier",
                       "channel states, live samples and events to an MQTT broker; an outbox "
                       "keeps the events the broker did not take", MqttSettings)]
