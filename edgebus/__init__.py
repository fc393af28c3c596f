"""edgebus: geo-distributed, compliance-aware data for Python workflows on Apache Kafka."""
