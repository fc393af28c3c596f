"""The client settings tests reach their broker with (the test broker is plaintext on
loopback): what edgebus's Kafka helpers take as their ``kafka`` argument."""

from edgebus.config import KafkaConfig

KAFKA = KafkaConfig()
