"""Pure functional core of edgebus: no I/O, no asyncio, no clock."""
