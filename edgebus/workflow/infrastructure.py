"""``EdgeInfrastructure``: the edge services every edge node of a runtime shares.

One instance per distinct *validated* edge_config and event loop: a dict and the
equal :class:`~edgebus.config.EdgeConfig` share one, two different configs get two.
An instance holds the config, its compliance rules and one
:class:`~edgebus.sdk.EdgeBus`, which owns the Kafka producer (one per cluster) and
region discovery (health and latency probes) that placement uses.

Creating an instance touches nothing; :meth:`EdgeInfrastructure.start` connects, and
raises :class:`~edgebus.errors.InfrastructureUnavailable` ("No edge infrastructure
available: ...", saying how to start a broker) when no Kafka answers.

Instances are bound to one event loop (aiokafka's producer is), hence the loop in
the sharing key; ``LocalRuntime.execute`` runs every workflow on one process-wide
loop so that synchronous callers share too.

Debugging: ``edge_config["debug"] = True`` sets the loggers
``edgebus.workflow.edge_infrastructure`` (creation, sharing, starting) and
``edgebus.edge`` (placement and routing decisions) to DEBUG, and, when logging is not
configured at all, prints them on stderr.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sys
import threading
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from edgebus.config import EdgeConfig, load_config
from edgebus.core.placement import ComplianceRules
from edgebus.sdk import EdgeBus

__all__ = ["EdgeInfrastructure", "config_key"]

log = logging.getLogger("edgebus.workflow.edge_infrastructure")
_DEBUG_LOGGERS = ("edgebus.workflow.edge_infrastructure", "edgebus.edge")
_debug_handler: logging.Handler | None = None


def config_key(config: EdgeConfig) -> str:
    """The sharing key of a validated config: its canonical JSON."""
    return json.dumps(config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


class EdgeInfrastructure:
    """Shared edge services for one edge_config: config, compliance rules, an EdgeBus.

    Get one with :meth:`shared`; construct directly only for a private instance.
    """

    _shared: ClassVar[
        weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, EdgeInfrastructure]]
    ] = weakref.WeakKeyDictionary()
    _unbound: ClassVar[dict[str, EdgeInfrastructure]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self, config: EdgeConfig | Mapping[str, Any] | None = None, *, key: str | None = None
    ) -> None:
        config = load_config(config)
        self.config = config
        self.key = key if key is not None else config_key(config)
        self.rules: ComplianceRules = config.compliance.rules()
        self.bus = EdgeBus(config, client_id=None)
        self._started = False
        self._start_lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        if config.debug:
            _enable_debug()
        log.debug(
            "created edge infrastructure %s: regions=%s clusters=%s strict_mode=%s "
            "edge_strategy=%s",
            self.short_key,
            list(config.regions),
            dict(self.bus.clusters),
            config.compliance.strict_mode,
            config.edge_strategy,
        )

    @property
    def short_key(self) -> str:
        """A short, stable name of the config for log lines."""
        return hashlib.sha256(self.key.encode()).hexdigest()[:10]

    @property
    def discovery(self) -> Any:
        """Region discovery (health and latency probes) of the bus; None until started."""
        return self.bus.discovery

    @property
    def started(self) -> bool:
        """Whether :meth:`start` succeeded (and :meth:`close` has not run since)."""
        return self._started

    @classmethod
    def shared(
        cls,
        edge_config: EdgeConfig | Mapping[str, Any] | str | Path | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> EdgeInfrastructure:
        """The instance for this config and event loop, created on first use.

        ``edge_config`` is anything :func:`~edgebus.config.load_config` takes (None:
        zero-config); ``loop`` defaults to the running loop, if any. Equal configs,
        however given, share one instance.
        """
        config = load_config(edge_config)
        key = config_key(config)
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
        with cls._lock:
            table = cls._unbound if loop is None else cls._shared.setdefault(loop, {})
            infra = table.get(key)
            if infra is None and loop is not None:
                # one created outside any loop and not started yet joins this loop
                idle = cls._unbound.get(key)
                if idle is not None and not idle._started:
                    infra = table[key] = cls._unbound.pop(key)
            if infra is not None:
                log.debug("sharing edge infrastructure %s", infra.short_key)
                return infra
            infra = cls(config, key=key)
            table[key] = infra
            return infra

    async def start(self) -> None:
        """Connect the bus (Kafka producer, discovery); idempotent.

        Raises InfrastructureUnavailable ("No edge infrastructure available: ...")
        when no broker answers; a later call tries again.
        """
        if self._started:
            return
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self._started:
                return
            log.debug(
                "starting edge infrastructure %s: connecting to %s",
                self.short_key,
                sorted(set(self.bus.clusters.values())),
            )
            try:
                await self.bus.start()
            except Exception as e:
                log.debug("edge infrastructure %s did not start: %s", self.short_key, e)
                raise
            self._started = True
            self._loop = loop = asyncio.get_running_loop()
            with self._lock:  # bound to this loop now: shared by its callers
                if self._unbound.get(self.key) is self:
                    del self._unbound[self.key]
                    self._shared.setdefault(loop, {}).setdefault(self.key, self)
            log.debug("edge infrastructure %s started", self.short_key)

    async def close(self) -> None:
        """Flush and disconnect the bus, and stop sharing this instance."""
        with self._lock:
            for table in [self._unbound, *self._shared.values()]:
                if table.get(self.key) is self:
                    del table[self.key]
        self._started = False
        self._loop = None
        await self.bus.close()
        log.debug("closed edge infrastructure %s", self.short_key)

    @classmethod
    async def close_all(cls) -> None:
        """Close every shared instance of the running loop, and unstarted unbound ones."""
        loop = asyncio.get_running_loop()
        with cls._lock:
            mine = list(cls._shared.get(loop, {}).values())
            mine += [i for i in cls._unbound.values() if i._loop in (None, loop)]
        for infra in mine:
            await infra.close()

    def __repr__(self) -> str:
        state = "started" if self._started else "not started"
        return f"EdgeInfrastructure({self.short_key}, regions={list(self.config.regions)}, {state})"


def _enable_debug() -> None:
    global _debug_handler
    for name in _DEBUG_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
    if _debug_handler is not None or logging.getLogger().handlers:
        return  # the application configured logging: its handlers print the trace
    _debug_handler = logging.StreamHandler(sys.stderr)
    _debug_handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
    for name in _DEBUG_LOGGERS:
        logging.getLogger(name).addHandler(_debug_handler)
