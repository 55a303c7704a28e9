"""Where a webhook may go: public addresses only, checked on the address actually dialled.

The host is resolved once, every address it resolves to is checked, and the request
is sent to that checked address (with the original Host header and TLS server name),
so a DNS answer that changes between check and connect cannot reach an inside host.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
from concurrent.futures import ThreadPoolExecutor

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# threads of its own (getaddrinfo blocks): look-ups must not wait behind whatever fills
# the default pool, and a slow resolver holds up webhooks alone
_lookups = ThreadPoolExecutor(4, thread_name_prefix="trackbook-dns")


class BlockedTarget(Exception):
    """The URL is not one a webhook may be sent to; retrying cannot help."""


class PrivateTarget(BlockedTarget):
    """The URL's host is (or resolves to) an address that is not public."""


PRIVATE_HINT = "private and loopback targets need TRACKBOOK_WEBHOOK_ALLOW_PRIVATE=true"


def check_url(url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
        # an A-label that does not decode (`xn--a`) is only found when the host is read
        host = parsed.host
    except (httpx.InvalidURL, TypeError, ValueError) as error:
        raise BlockedTarget(f"{url!r} is not a URL") from error
    if parsed.scheme not in ("http", "https") or not bare_host(host):
        raise BlockedTarget("must be an http or https URL with a host")
    if parsed.userinfo:
        raise BlockedTarget("must not carry a user name or password")
    return parsed


NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Never public whatever they carry: site-local; IPv4-mapped and IPv4-translated (SIIT,
# RFC 6145), which a public host has no need of (its IPv4 address serves) and which some
# stacks route to the local host; local-use NAT64 (RFC 8215), whose translator maps to
# whatever this network chose, private ranges included
NEVER_PUBLIC = tuple(
    ipaddress.ip_network(network)
    for network in ("fec0::/10", "::ffff:0:0/96", "::ffff:0:0:0/96", "64:ff9b:1::/48")
)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries: mapped, 6to4, NAT64 or IPv4-compatible."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in NAT64 or int(address) >> 32 == 0:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        if any(address in network for network in NEVER_PUBLIC):
            return False
        embedded = _embedded_ipv4(address)
        if embedded is not None and not is_public(embedded):
            return False
    # is_global is False for loopback, private, link-local (cloud metadata at
    # 169.254.169.254), shared (100.64/10), reserved and documentation ranges
    return address.is_global and not address.is_multicast


def bare_host(host: str) -> str:
    """The host without the trailing dots that make a name absolute: `127.0.0.1.` and
    `localhost.` are the same targets as without them."""
    return host.rstrip(".")


def is_loopback_name(host: str) -> bool:
    """`localhost`, its subdomains and `localhost.localdomain`: names a resolver answers
    with a loopback address (RFC 6761, section 6.3), whatever DNS would say."""
    name = bare_host(host).lower()
    return name in ("localhost", "localhost.localdomain") or name.endswith(".localhost")


async def resolve(url: httpx.URL, *, allow_private: bool) -> IPAddress:
    """The address to dial for `url`; BlockedTarget when it (or any address its host
    resolves to) is not public, unless private targets are allowed."""
    host = url.host
    if not allow_private and is_loopback_name(host):
        raise PrivateTarget(f"{host} is a loopback name, not a public address; {PRIVATE_HINT}")
    try:
        addresses: list[IPAddress] = [ipaddress.ip_address(bare_host(host))]
    except ValueError:
        # the name as given: a trailing dot keeps the resolver from trying search domains
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            infos = await asyncio.get_running_loop().run_in_executor(
                _lookups, functools.partial(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
            )
        except socket.gaierror as error:
            raise OSError(f"{host} does not resolve: {error.strerror}") from error
        addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    if not allow_private:
        for address in addresses:
            if not is_public(address):
                raise PrivateTarget(f"{host} is {address}, not a public address; {PRIVATE_HINT}")
    return addresses[0]


async def check_target(url: str, *, allow_private: bool, seconds: float) -> None:
    """Refuses a webhook URL when it is given (BlockedTarget): one that is not http(s),
    or whose host is, or now resolves to, an address that is not public.

    A name that does not resolve within `seconds` passes: its owner may add the record
    later, and the resolver may be down for a while. That is safe because this check is
    only the early answer: the address is checked again each time a message is sent
    (`resolve`), which is what stops a name that points inside now or later (DNS
    rebinding)."""
    target = check_url(url)
    if allow_private:
        return
    try:
        async with asyncio.timeout(seconds):
            await resolve(target, allow_private=False)
    except OSError:  # no such name, no answer, or no answer in time (TimeoutError)
        return


def pinned(url: httpx.URL, address: IPAddress) -> tuple[httpx.URL, dict[str, str], dict[str, str]]:
    """The URL to request, the Host header and the request extensions that send `url`
    to `address` while the server still sees (and TLS verifies) the original host."""
    headers = {"host": url.netloc.decode("ascii")}
    extensions = {"sni_hostname": url.host} if url.scheme == "https" else {}
    return url.copy_with(host=str(address)), headers, extensions
