"""HTTP for the JSON-RPC client: one kept-alive connection pool per client, straight on urllib3.

requests cost about 1.2 ms of CPU per call here (session merging, environment lookups, hooks, response objects),
three times urllib3 under it: every process that follows the chain (the ingester, the alerts' lag check, the
standby responder, the devnet's aggregator and operators) paid it on each call. What requests did for us is kept:
the proxy named by the environment (read once, when the client is made), the CA bundle it would use, basic auth
from the URL, gzip answers. Not kept: redirects (a JSON-RPC endpoint answers, it does not move) and ~/.netrc.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import unquote

import certifi
import urllib3
from requests.utils import get_environ_proxies
from urllib3.util import make_headers, parse_url


class TransportFailure(Exception):
    """No HTTP answer. ``reason`` is one line in our words; ``connect``: no connection could be made at all
    (refused, DNS, connect timeout)."""

    def __init__(self, reason: str, *, connect: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.connect = connect


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    body: bytes


def describe_failure(exc: BaseException) -> str:
    """A one-line reason for a transport failure, without urllib3's nested repr soup."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror:
            return current.strerror.lower()
        nested = getattr(current, "reason", None)
        if isinstance(nested, BaseException):
            current = nested
            continue
        arg = current.args[0] if current.args else None
        current = arg if isinstance(arg, BaseException) else (current.__cause__ or current.__context__)
    text = str(exc)
    return text if len(text) <= 160 else text[:157] + "..."


def _ca_bundle() -> str:
    # The bundle requests would have used: its environment overrides, else certifi's.
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or certifi.where()


class HttpTransport:
    """POSTs to one URL over a small pool of kept-alive connections. Not thread-safe by contract (one per
    client, one client per thread), though urllib3's pool would tolerate it."""

    def __init__(self, url: str, *, timeout: float, max_connections: int = 4) -> None:
        parsed = parse_url(url)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError(f"not an http(s) URL: {url[:80]!r}")
        self.timeout = timeout
        self.headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            **make_headers(accept_encoding=True, keep_alive=True),
        }
        if parsed.auth:
            self.headers.update(make_headers(basic_auth=unquote(parsed.auth)))
        # The URL as sent: without its credentials (they travel in the header).
        self.url = parsed._replace(auth=None).url
        proxies = get_environ_proxies(self.url)
        proxy = proxies.get(parsed.scheme) or proxies.get("all")
        ca_certs = _ca_bundle()
        self.pool: urllib3.PoolManager
        if proxy:
            self.pool = urllib3.ProxyManager(proxy, num_pools=1, maxsize=max_connections, ca_certs=ca_certs)
        else:
            self.pool = urllib3.PoolManager(1, maxsize=max_connections, ca_certs=ca_certs)

    def post(self, body: bytes) -> HttpAnswer:
        """The answer's status and (decoded) body; TransportFailure when there is none."""
        try:
            response = self.pool.urlopen(
                "POST",
                self.url,
                body=body,
                headers=self.headers,
                timeout=self.timeout,
                retries=False,  # the client owns the retry policy
                redirect=False,
                preload_content=True,
            )
        except urllib3.exceptions.ConnectTimeoutError as exc:  # NewConnectionError and DNS failures included
            raise TransportFailure(describe_failure(exc), connect=True) from None
        except urllib3.exceptions.ReadTimeoutError:
            raise TransportFailure(f"timeout after {self.timeout:g}s") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise TransportFailure(describe_failure(exc)) from None
        return HttpAnswer(status=response.status, body=response.data)

    def close(self) -> None:
        self.pool.clear()
