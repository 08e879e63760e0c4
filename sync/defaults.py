"""Every timeout, size and interval of the sinks, with its default, in one place."""

from __future__ import annotations

# -- delivery (both sinks) -----------------------------------------------------------------------------
INFLIGHT = 32  # messages sent and not yet covered by the durable cursor (bounds duplicates after a crash)
READ_BATCHES = 8  # a store read fetches up to this many batch_max worth of readings
READ_AHEAD = 4  # chunks (one store read each, batched and encoded) prepared ahead of the sender
IDLE_WAIT = 1.0  # s: how long the sender waits for new data before refreshing its backlog figures
BACKLOG_REFRESH = 1.0  # s: the oldest-unsent age is re-read from the store at most this often
RATE_WINDOW = 10.0  # s: send_rate is averaged over this window
CLOSE_TIMEOUT = 1.0  # s: close() waits this long for the final cursor write
STOP_WAIT = 1.0  # s: run() waits this long for its delivery tasks to end when stopped
DRAIN_TIMEOUT = 0.5  # s: on stop, outstanding acks are awaited this long (what is not acked is sent again)

# -- reconnect / retry backoff (exponential with full jitter between min and the doubled delay) ----------
BACKOFF_MIN = 0.2  # s
BACKOFF_MAX = 2.0  # s: a sink tries again at least this often, so it is back within ~2 s of its peer
JITTER = 0.5  # fraction of each delay that is random

# -- MQTT -------------------------------------------------------------------------------------------------
MQTT_PORT = 1883
MQTTS_PORT = 8883
MQTT_RECONNECT_MAX = 1.0  # s: a broker that returns is found within ~1 s (+ the connect), inside the 2 s aim
MQTT_KEEPALIVE = 30.0  # s
MQTT_CONNECT_TIMEOUT = 10.0  # s: TCP + TLS + CONNACK
MQTT_STABLE_CONNECTION = 30.0  # s: a connection ends a failure streak once it has lasted this long (a flapping link
# is one outage in the log: a warning at its first failure, one line when a connection has held this long)
MQTT_TOPIC = "edge/{edge}/readings"
MQTT_STATUS_TOPIC = "edge/{edge}/status"
MQTT_STATUS_ONLINE = "online"
MQTT_STATUS_OFFLINE = "offline"
MQTT_STATUS_WAIT = 0.3  # s: on stop, the "offline" status publish is awaited this long
MQTT_REPLAY_TIMEOUT = 30.0  # s: a replayed dead letter must be PUBACKed within this
MQTT_THROTTLE_MIN = 1.0  # s: first pause after a PUBACK "quota exceeded" (the broker throttles this client)
MQTT_THROTTLE_MAX = 30.0  # s: longest pause while it keeps throttling

# -- HTTP -------------------------------------------------------------------------------------------------
HTTP_TIMEOUT = 30.0  # s: one request, connect to last byte of the response
HTTP_RETRY_MAX = 60.0  # s: longest wait between retries of one request (exponential backoff ceiling)
HTTP_RETRY_AFTER_MAX = 600.0  # s: a Retry-After beyond this is capped to it
HTTP_ERROR_BODY_MAX = 500  # characters of a refused response body kept in the dead letter's error text
