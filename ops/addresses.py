"""Is an address on the public internet? The check that keeps the portal from posting into
its own network when someone else chooses the address (webhooks).

``ipaddress``'s ``is_global`` judges an IPv6 address by its own prefix only, so an IPv4
address carried inside an IPv6 one passes as public: ``::ffff:127.0.0.1`` (IPv4-mapped)
aside, ``::127.0.0.1`` (IPv4-compatible), ``64:ff9b::7f00:1`` (NAT64) and ``2002:7f00:1::``
(6to4) all reach loopback on hosts or networks that translate them. Every IPv4 address an
IPv6 address embeds is therefore judged too, and the address is public only when all are.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# NAT64 (RFC 6052): the well-known prefix carries the IPv4 address in its last 32 bits.
NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")
# RFC 8215's local-use translation prefix: for networks' own translators, never global
# (where the IPv4 address sits depends on the prefix length a network chose).
NAT64_LOCAL_USE = ipaddress.ip_network("64:ff9b:1::/48")


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries: IPv4-mapped, IPv4-compatible
    (``::a.b.c.d``, deprecated but still routed by some stacks), 6to4, Teredo (server and
    client) and NAT64's well-known prefix."""
    found = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in NAT64_WELL_KNOWN or int(address) >> 32 == 0:
        found.append(low32)
    return found


def non_public_reason(address: str | IPAddress) -> str | None:
    """Why ``address`` is not a public internet address (loopback, private, link-local,
    reserved, shared, or an IPv6 form embedding one of those), or None when it is public."""
    ip = ipaddress.ip_address(address.split("%", 1)[0] if isinstance(address, str)
                              else address)
    if not ip.is_global:
        return f"{ip} is not a public address"
    if ip.version == 6:
        if ip in NAT64_LOCAL_USE:
            return f"{ip} is in the local-use NAT64 prefix {NAT64_LOCAL_USE}"
        for inner in embedded_ipv4(ip):
            if not inner.is_global:
                return f"{ip} embeds the non-public IPv4 address {inner}"
    return None


def is_public(address: str | IPAddress) -> bool:
    return non_public_reason(address) is None


def first_non_public(host: str) -> str | None:
    """The first address ``host`` resolves to that is not public, or None (also when the
    host does not resolve: connecting then fails on its own)."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError, ValueError):
        return None
    for info in infos:
        address = info[4][0].split("%", 1)[0]
        if not is_public(address):
            return address
    return None


def url_non_public(url: str) -> str | None:
    """The first address the host of ``url`` resolves to that is not public, or None.

    The host is read by the parser that connects (urllib3's, under requests) as well as the
    standard library's: where they differ (``http://127.0.0.1\\@example.com/``), either one
    being private refuses it."""
    from urllib3.util import parse_url

    hosts = {urlsplit(url).hostname or ""}
    try:
        hosts.add((parse_url(url).host or "").strip("[]").lower())
    except ValueError:
        pass
    return next(filter(None, (first_non_public(host) for host in sorted(hosts))), None)


# -- the address actually connected to ------------------------------------------------------------
#
# Checking a host's DNS answer and then letting requests resolve it again to connect leaves a
# window: a name whose answer changes in between (DNS rebinding, TTL 0) passes the check as
# public and is connected to on loopback. ``public_only_session`` closes it by checking the
# peer of every new connection (``getpeername``) before a byte is sent, TLS included.

class NonPublicPeer(OSError):
    """A connection reached an address that is not public; it was closed unused."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _checked(sock):
    try:
        peer = sock.getpeername()[0]
    except OSError:
        sock.close()
        raise
    reason = non_public_reason(str(peer))
    if reason:
        sock.close()
        raise NonPublicPeer(f"connected to {reason}")
    return sock


def _adapter_class():
    from requests.adapters import HTTPAdapter
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    class PublicHTTPConnection(HTTPConnection):
        def _new_conn(self):
            return _checked(super()._new_conn())

    class PublicHTTPSConnection(HTTPSConnection):
        def _new_conn(self):  # before the TLS handshake: nothing is sent to a private peer
            return _checked(super()._new_conn())

    class PublicHTTPConnectionPool(HTTPConnectionPool):
        ConnectionCls = PublicHTTPConnection

    class PublicHTTPSConnectionPool(HTTPSConnectionPool):
        ConnectionCls = PublicHTTPSConnection

    class PublicOnlyAdapter(HTTPAdapter):
        """Refuses (``NonPublicPeer`` inside requests' ConnectionError) any direct connection
        whose peer is not a public address. Through a proxy the peer is the proxy, the
        operator's: those connections are not checked."""

        def init_poolmanager(self, *args, **kwargs):
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {
                "http": PublicHTTPConnectionPool, "https": PublicHTTPSConnectionPool}

    return PublicOnlyAdapter


_ADAPTER = None


def public_only_adapter():
    """A requests ``HTTPAdapter`` that connects to public addresses only (see above)."""
    global _ADAPTER
    if _ADAPTER is None:
        _ADAPTER = _adapter_class()
    return _ADAPTER()


def public_only(session):
    """``session`` with both schemes going through ``public_only_adapter``; returned."""
    for prefix in ("http://", "https://"):
        session.mount(prefix, public_only_adapter())
    return session


def refused_peer(error: BaseException | None) -> str | None:
    """The reason when ``error`` (a requests or urllib3 exception) comes from a refused
    non-public peer, else None."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, NonPublicPeer):
            return error.reason
        inner = getattr(error, "reason", None)
        if isinstance(inner, BaseException):
            error = inner
            continue
        nested = next((a for a in getattr(error, "args", ()) if isinstance(a, BaseException)),
                      None)
        error = nested or error.__cause__ or error.__context__
    return None
