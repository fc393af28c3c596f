"""The names of the data classes edgebus detects, and of the class that needs nothing.

Classification (:mod:`edgebus.core.classification`) finds ``pii``, ``phi`` and
``financial`` in a record, from field names (:mod:`edgebus.core.field_names`) and from
values (:mod:`edgebus.core.detectors`); a record in which nothing fires is ``public``
unless the config names another default. Compliance rules
(:mod:`edgebus.core.placement`) map each class to the zones it requires.

Pure: constants only.
"""

from __future__ import annotations

__all__ = ["FINANCIAL", "PHI", "PII", "PUBLIC"]

#: personally identifiable information
PII = "pii"
#: protected health information (subsumes PII in a record's classes)
PHI = "phi"
#: payment, banking and tax data
FINANCIAL = "financial"
#: data no rule restricts (the default class)
PUBLIC = "public"
