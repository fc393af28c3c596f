"""The Kafka adapter: the only code that talks to Kafka. Clients are built in one place
(:mod:`edgebus.kafka.clients`); topics (:mod:`edgebus.kafka.topics`), which cluster
serves a region (:mod:`edgebus.kafka.clusters`), reading to the end, batching writes
and dead letters build on them."""
