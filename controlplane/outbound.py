"""Every call the control plane makes to someone else: fenced.

- **A total deadline** per call, not per socket read: a watchdog shuts the connection down when it passes, so an
  endpoint that trickles its answer a byte at a time costs no more than one that never answers.
- **A capped read**: at most ``max_bytes`` of an answer are read; more is an error, never buffered.
- **Strict targets for operator-chosen addresses** (``operator_target``): an operator's socket must be
  ``http(s)://host[:port]`` with no user, path, query or fragment; names resolving to private, loopback,
  link-local or otherwise special addresses are refused unless ``OUTBOUND_ALLOWED_NETWORKS`` names them (the
  devnet's operators live on 127.0.0.1). Secrets (bearer tokens) go over https only, unless the target is in
  that allow-list.
- **Errors in our own words** (``OutboundError.reason``): what a remote endpoint answered is never echoed.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket as socketlib
import ssl
import threading
import time
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

from django.conf import settings

_TLS_CONTEXT = ssl.create_default_context()
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class OutboundError(Exception):
    """A call that did not get an answer; ``reason`` is safe to store and show (never the remote's words)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class OutboundRefused(OutboundError):
    """A target we will not call at all (malformed, or an address that is not allowed)."""


class DeadlineExceeded(OutboundError):
    pass


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int | None
    prefix: str = ""
    allowed_network: bool = False  # the host is in OUTBOUND_ALLOWED_NETWORKS (plain http may carry secrets)

    @property
    def origin(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}" + (f":{self.port}" if self.port else "")


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    headers: Mapping[str, str]


@lru_cache(maxsize=16)
def _networks(spec: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(item.strip(), strict=False) for item in spec if item.strip())


def _allowed_networks() -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return _networks(tuple(settings.OUTBOUND_ALLOWED_NETWORKS))


def _special(ip: IPAddress) -> bool:
    return bool(
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or (isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None and _special(ip.ipv4_mapped))
    )


def _resolve(host: str, port: int | None) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socketlib.getaddrinfo(host, port or 443, type=socketlib.SOCK_STREAM)
    except (socketlib.gaierror, UnicodeError) as exc:
        raise OutboundRefused(f"cannot resolve {host[:80]}") from exc
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


def operator_target(socket: str) -> Target:
    """The base URL of an operator's socket, checked: raises OutboundRefused with a reason to show."""
    raw = socket.strip()
    shown = raw[:80]
    if "://" not in raw:
        raw = f"http://{raw}"  # a bare host:port, as operators often register it
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        raise OutboundRefused(f"socket {shown!r} is not a URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OutboundRefused(f"socket {shown!r} is not http(s)://host[:port]")
    if parts.username is not None or parts.password is not None:
        raise OutboundRefused("socket carries a user name or password")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise OutboundRefused("socket has a path, query or fragment: only http(s)://host[:port] is taken")
    host = parts.hostname
    addresses = _resolve(host, port)
    networks = _allowed_networks()
    allowed = bool(addresses) and all(any(ip in net for net in networks) for ip in addresses)
    if not allowed and any(_special(ip) for ip in addresses):
        raise OutboundRefused(
            f"socket host {host[:80]} is a private, loopback or link-local address "
            "(allow it with OUTBOUND_ALLOWED_NETWORKS)"
        )
    return Target(scheme=parts.scheme, host=host, port=port, allowed_network=allowed)


def configured_target(url: str) -> Target:
    """A URL from our own configuration (the aggregator, a webhook endpoint): parsed, not address-checked."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise OutboundRefused(f"{url[:80]!r} is not a URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OutboundRefused(f"{url[:80]!r} is not an http(s) URL")
    path = parts.path.rstrip("/") + (f"?{parts.query}" if parts.query else "")
    return Target(scheme=parts.scheme, host=parts.hostname, port=port, prefix=path, allowed_network=True)


def request(
    method: str,
    target: Target,
    path: str = "",
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float,
    max_bytes: int,
    secret: bool = False,
) -> Answer:
    """One HTTP request that answers, or raises OutboundError, within ``timeout`` seconds in all.

    ``secret``: the request carries a credential, so it goes over https only (or to an allowed network).
    """
    if secret and target.scheme != "https" and not target.allowed_network:
        raise OutboundRefused(f"{target.host[:80]} is plain http: a token is sent over https only")
    deadline = time.monotonic() + timeout
    remaining = timeout
    conn: http.client.HTTPConnection
    if target.scheme == "https":
        conn = http.client.HTTPSConnection(target.host, target.port, timeout=remaining, context=_TLS_CONTEXT)
    else:
        conn = http.client.HTTPConnection(target.host, target.port, timeout=remaining)
    expired = threading.Event()
    opened: list[
        socketlib.socket
    ] = []  # the connection's socket, kept: http.client forgets it after the answer

    def _expire() -> None:
        expired.set()
        for sock in opened:
            with suppress(OSError):
                sock.shutdown(socketlib.SHUT_RDWR)

    watchdog = threading.Timer(remaining, _expire)
    watchdog.daemon = True
    watchdog.start()
    try:
        conn.connect()
        if conn.sock is not None:
            opened.append(conn.sock)
        if expired.is_set():  # the watchdog fired while connecting, before there was a socket to shut down
            raise DeadlineExceeded(f"no answer within {timeout:g}s")
        sent = {"Connection": "close", "User-Agent": "avs-controlplane", **(headers or {})}
        conn.request(method, target.prefix + path, body=body, headers=sent)
        response = conn.getresponse()
        data = bytearray()
        while len(data) <= max_bytes:
            # read1: whatever has arrived (one receive), so the deadline is checked between trickled bytes.
            chunk = response.read1(max_bytes + 1 - len(data))
            if not chunk or expired.is_set():
                break
            data += chunk
        if expired.is_set() or time.monotonic() > deadline:
            raise DeadlineExceeded(f"no answer within {timeout:g}s")
        if len(data) > max_bytes:
            raise OutboundError(f"answer over {max_bytes} bytes (HTTP {response.status})")
        answer_headers = {k.lower(): v for k, v in response.getheaders()}
        return Answer(status=response.status, body=bytes(data), headers=answer_headers)
    except OutboundError:
        raise
    except TimeoutError as exc:
        raise DeadlineExceeded(f"no answer within {timeout:g}s") from exc
    except (OSError, http.client.HTTPException) as exc:
        if expired.is_set():
            raise DeadlineExceeded(f"no answer within {timeout:g}s") from exc
        raise OutboundError(failure_reason(exc)) from exc
    finally:
        watchdog.cancel()
        conn.close()


def failure_reason(exc: BaseException) -> str:
    """A transport failure in our own words (an exception's text can carry what the remote sent)."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "TLS certificate not trusted"
    if isinstance(exc, ssl.SSLError):
        return "TLS error"
    if isinstance(exc, socketlib.gaierror):
        return "cannot resolve host"
    if isinstance(exc, http.client.HTTPException):
        return "malformed HTTP answer"
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"network error ({exc.errno})"
    return f"network error ({type(exc).__name__})"
