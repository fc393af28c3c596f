"""A region service's announcement: where its query endpoint is, as JSON.

A region service writes one when it starts serving, with the key ``query``, in the
compacted topic ``edgebus.<R>.service`` of its region's cluster (see
:func:`~edgebus.kafka.topics.service_topic`); clients read the newest one to find the
endpoint (:class:`~edgebus.sdk.region_client.RegionClient`). The value is a JSON
object::

    {"region": "eu-west-1", "url": "http://10.0.0.7:8700", "pid": 4242,
     "host": "node-7", "store": "sqlite:///var/lib/edgebus/eu-west-1.db",
     "started_ms": 1764000000123}

Anyone who can write to the topic can write anything there, so
:func:`decode_announcement` checks every field (and ignores fields it does not know,
which a newer writer may add) and refuses the rest with a
:class:`~edgebus.errors.DecodeError`, in time linear in the value's size (at most
:data:`MAX_ANNOUNCEMENT_BYTES`). A well-formed announcement may still point elsewhere
(a host that collects the tokens clients send): :class:`EndpointPolicy` says which
hosts a client calls (``query.allowed_hosts``; by default loopback and the hosts of the
configured Kafka bootstrap addresses) and whether it calls https endpoints only.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any, Final, NamedTuple
from urllib.parse import urlsplit

import orjson

from edgebus.errors import DecodeError, InvalidInput

__all__ = [
    "ANNOUNCEMENT_KEY",
    "MAX_ANNOUNCEMENT_BYTES",
    "MAX_URL_CHARS",
    "Announcement",
    "EndpointPolicy",
    "bootstrap_hosts",
    "decode_announcement",
    "encode_announcement",
]

#: the record key of a query endpoint's announcement
ANNOUNCEMENT_KEY: Final = b"query"
#: the largest announcement value decoded (a real one is a few hundred bytes)
MAX_ANNOUNCEMENT_BYTES: Final = 64 * 1024
#: the longest endpoint URL
MAX_URL_CHARS: Final = 2048
#: the longest region name (region names are part of topic names: 249 characters)
_MAX_REGION_CHARS: Final = 249
#: the longest host name and store URL
_MAX_TEXT_CHARS: Final = 4096
_MAX_INT: Final = 2**63 - 1


class Announcement(NamedTuple):
    """Where a region service serves its query endpoint, and which process it is."""

    region: str
    url: str
    pid: int
    host: str
    store: str
    started_ms: int


def encode_announcement(announcement: Announcement) -> bytes:
    """The JSON value of an announcement; InvalidInput if a field is not what
    :func:`decode_announcement` accepts (e.g. a URL that is not http or https)."""
    problem = _problem(announcement._asdict())
    if problem is not None:
        raise InvalidInput(
            f"Cannot announce the query endpoint of region {announcement.region!r:.80}: "
            f"{problem}. Pass an http:// or https:// URL other processes can reach "
            "(--advertise)."
        )
    return orjson.dumps(announcement._asdict())


def decode_announcement(value: bytes | None) -> Announcement:
    """Parse :func:`encode_announcement`'s bytes; DecodeError for anything else: no
    value, over :data:`MAX_ANNOUNCEMENT_BYTES`, not a JSON object, a field missing or
    of the wrong type, an empty or overlong region, a URL that is not an http or https
    URL of at most :data:`MAX_URL_CHARS` characters, a negative pid or start time."""
    if not value:
        raise DecodeError("A service announcement has no value (expected a JSON object).")
    if len(value) > MAX_ANNOUNCEMENT_BYTES:
        raise DecodeError(
            f"A service announcement of {len(value)} bytes is over the "
            f"{MAX_ANNOUNCEMENT_BYTES} an announcement may have."
        )
    try:
        fields = orjson.loads(value)
    except orjson.JSONDecodeError as e:
        raise DecodeError(f"A service announcement is not JSON ({e}).") from None
    if not isinstance(fields, dict):
        raise DecodeError(
            f"A service announcement is a JSON {type(fields).__name__}, not an object."
        )
    problem = _problem(fields)
    if problem is not None:
        raise DecodeError(f"Bad service announcement: {problem}.")
    return Announcement(*(fields[name] for name in Announcement._fields))


def _problem(fields: dict[str, Any]) -> str | None:
    """What is wrong with an announcement's fields, or None."""
    for name in ("region", "url", "host", "store"):
        text = fields.get(name)
        if not isinstance(text, str):
            return f"{name} must be a string, got {_shown(text)}"
    for name in ("pid", "started_ms"):
        number = fields.get(name)
        if type(number) is not int or not 0 <= number <= _MAX_INT:
            return f"{name} must be an integer from 0 to {_MAX_INT}, got {_shown(number)}"
    region = fields["region"]
    if not region or len(region) > _MAX_REGION_CHARS:
        return f"region must have 1 to {_MAX_REGION_CHARS} characters, got {len(region)}"
    for name in ("host", "store"):
        if len(fields[name]) > _MAX_TEXT_CHARS:
            return f"{name} is over {_MAX_TEXT_CHARS} characters"
    return _url_problem(fields["url"])


def _url_problem(url: str) -> str | None:
    if len(url) > MAX_URL_CHARS:
        return f"url is over {MAX_URL_CHARS} characters"
    if not url.isascii() or not url.isprintable() or " " in url:
        return f"url {url[:80]!r} holds characters a URL does not (spaces, controls, non-ASCII)"
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError when out of range or not a number
    except ValueError as e:
        return f"url {url[:80]!r} is not a URL ({e})"
    if parts.scheme not in ("http", "https") or not parts.hostname or port == 0:
        return (f"url {url[:80]!r} is not an http:// or https:// URL of a host (with a "
                "port from 1 to 65535, if any)")
    return None


class EndpointPolicy(NamedTuple):
    """Which announced query endpoints a client calls (it sends them its token).

    ``allowed_hosts`` (``query.allowed_hosts``): names (case-insensitive), IP addresses
    and networks; empty: loopback (127.0.0.0/8, ::1, ``localhost``) and
    ``bootstrap_hosts``, the hosts of the configured Kafka bootstrap addresses.
    ``https_only``: refuse ``http://`` endpoints (clients expecting TLS are never
    downgraded by an announcement).
    """

    allowed_hosts: tuple[str, ...] = ()
    bootstrap_hosts: tuple[str, ...] = ()
    https_only: bool = False

    def problem(self, url: str) -> str | None:
        """Why a client must not call ``url`` (an announcement's, already checked by
        :func:`decode_announcement`), or None."""
        try:
            parts = urlsplit(url)
        except ValueError as e:
            return f"url {url[:80]!r} is not a URL ({e})"
        host = (parts.hostname or "").rstrip(".")
        if self.https_only and parts.scheme != "https":
            return (f"url {url[:80]!r} is not https, and this client verifies endpoints "
                    "with TLS (query.ca_file or query.tls_cert_file is set)")
        if self.allowed_hosts:
            if not any(host_matches(host, entry) for entry in self.allowed_hosts):
                return (f"host {host[:80]!r} is not in query.allowed_hosts "
                        f"({', '.join(self.allowed_hosts)[:200]})")
            return None
        if is_loopback(host) or any(host_matches(host, b) for b in self.bootstrap_hosts):
            return None
        return (f"host {host[:80]!r} is neither loopback nor a Kafka bootstrap host "
                f"({', '.join(self.bootstrap_hosts)[:200] or 'none'}); list the hosts "
                "region services announce in query.allowed_hosts")


def bootstrap_hosts(addresses: Iterable[str]) -> tuple[str, ...]:
    """The hosts of Kafka bootstrap addresses (``"a:9092,[::1]:9093"``), lower case,
    each once."""
    hosts: dict[str, None] = {}
    for address in addresses:
        for entry in address.split(","):
            entry = entry.strip().rpartition("://")[2]
            if entry.startswith("["):
                host = entry[1:].partition("]")[0]
            elif entry.count(":") == 1:
                host = entry.partition(":")[0]
            else:
                host = entry  # no port, or an IPv6 address without brackets
            if host:
                hosts[host.lower().rstrip(".")] = None
    return tuple(hosts)


def is_loopback(host: str) -> bool:
    """``localhost`` or an address in 127.0.0.0/8 or ::1 (an IPv4-mapped one too)."""
    if host.lower().rstrip(".") == "localhost":
        return True
    address = _address(host)
    return address is not None and address.is_loopback


def host_matches(host: str, entry: str) -> bool:
    """Whether ``host`` (a URL's) is ``entry``: the same name (case-insensitive), the
    same IP address, or an address in the network ``entry`` (``10.0.0.0/8``)."""
    entry = entry.strip().strip("[]").lower().rstrip(".")
    host = host.strip("[]").lower().rstrip(".")
    address = _address(host)
    if "/" in entry:
        try:
            return address is not None and address in ipaddress.ip_network(entry, strict=False)
        except ValueError:
            return False
    wanted = _address(entry)
    if address is not None or wanted is not None:
        return address == wanted
    return bool(host) and host == entry


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _shown(value: Any) -> str:
    if value is None:
        return "nothing"
    return f"{type(value).__name__} {value!r:.60}"
