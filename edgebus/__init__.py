"""edgebus: geo-distributed, compliance-aware data for Python workflows on Apache Kafka.

    async with EdgeBus() as bus:
        receipt = await bus.write("user:42", {"email": "ann@example.com"})
        receipt.placement   # ('eu-west-1',): PII stays in GDPR regions
"""

from edgebus.config import EdgeConfig, load_config
from edgebus.core.session import SessionToken
from edgebus.errors import (
    ComplianceViolation,
    EdgebusError,
    InfrastructureUnavailable,
    InvalidInput,
)
from edgebus.sdk import EdgeBus, EdgeBusSync, WriteReceipt

__all__ = [
    "ComplianceViolation",
    "EdgeBus",
    "EdgeBusSync",
    "EdgeConfig",
    "EdgebusError",
    "InfrastructureUnavailable",
    "InvalidInput",
    "SessionToken",
    "WriteReceipt",
    "load_config",
]

__version__ = "0.1.0"
