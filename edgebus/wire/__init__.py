"""The wire format: Avro single-object encoding for values, edgebus headers for routing.

Any Kafka client can read an edgebus record with nothing but the ``.avsc`` files in
``schemas/``: see ``schemas/README.md``.
"""
