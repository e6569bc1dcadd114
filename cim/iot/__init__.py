"""Live sensor state: MQTT and HTTP ingest, history, threshold rules and alerts, a live WebSocket push.

Sensors are assets of kind ``sensor`` bound to the asset they watch (``parent_id``), with ``props["quantity"]``,
``props["unit"]`` and optional ``props["thresholds"]`` (:mod:`cim.iot.sensors`). :class:`IotService` owns the live
state; the web layer's :mod:`cim.api.iot` exposes it over HTTP and a WebSocket.

The app's lifespan (:func:`cim.api.create_app`) starts it and hands it to the routes::

    service = IotService(store, MqttSettings())
    await service.start()   # loads sensors, latest states, open alerts; subscribes when CIM_MQTT_URL is set
    ...                     # Resources(..., iot=service): the routes get it through cim.api.iot.get_iot
    await service.stop()    # stops MQTT, closes WebSockets, flushes buffered readings

The service reaches the store from one worker thread of its own; with the embedded DuckDB store the app must share
its one store object with the service (DuckDB allows one writer process).
"""

from __future__ import annotations

from cim.iot.rules import Condition, Rule
from cim.iot.sensors import Sensor, sensor_asset
from cim.iot.service import IotOptions, IotService

__all__ = ["Condition", "IotOptions", "IotService", "Rule", "Sensor", "sensor_asset"]
