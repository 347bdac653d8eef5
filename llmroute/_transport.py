"""The router's default HTTP transport: small connection pools per origin, so large pools stay cheap.

httpcore's connection pool re-scans every connection (and, for each idle one, every connection
again) whenever a request starts or ends, so its CPU cost per request grows with the pool: at 100
connections it costs several times what it does at 8 (``bench/burst.py`` measures it). The
router's admission limit already keeps the number of requests at or below ``max_connections``;
this transport splits those connections into pools of at most ``shard_size`` per origin
(scheme, host, port), opened as they are needed, and sends each request through the least busy
pool of its origin. Connections to one provider are still reused; a busy provider simply gets
more small pools.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import AsyncIterator

import httpx

__all__ = ["PooledTransport", "env_proxies"]

_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy")


def env_proxies() -> bool:
    """Whether the environment asks for an HTTP proxy (httpx then routes through it)."""
    return any(os.environ.get(v) or os.environ.get(v.upper()) for v in _PROXY_VARS)


class _Pool:
    __slots__ = ("in_flight", "transport")

    def __init__(self, transport: httpx.AsyncHTTPTransport) -> None:
        self.transport = transport
        self.in_flight = 0


class _Releasing(httpx.AsyncByteStream):
    """A response body that gives its pool's place back once closed (no generator of its own, so
    nothing is left for a garbage-collector finalizer when a reader stops early)."""

    __slots__ = ("_pool", "_stream")

    def __init__(self, stream: httpx.AsyncByteStream, pool: _Pool) -> None:
        self._stream = stream
        self._pool: _Pool | None = pool

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._stream.__aiter__()

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            if self._pool is not None:
                self._pool.in_flight -= 1
                self._pool = None


class PooledTransport(httpx.AsyncBaseTransport):
    """An ``httpx`` transport with per-origin pools of at most *shard_size* connections each.

    At most *max_connections* connections per origin (callers keep concurrent requests at or below
    it, as the router's admission limit does); about *max_keepalive_connections* idle ones are kept
    per origin: all of the first pools', one in each pool beyond them.
    """

    def __init__(
        self,
        *,
        max_connections: int = 100,
        max_keepalive_connections: int = 20,
        keepalive_expiry: float = 5.0,
        shard_size: int = 8,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        if shard_size < 1 or max_connections < 1:
            raise ValueError("shard_size and max_connections must be at least 1")
        self.max_connections = max_connections
        self.shard_size = min(shard_size, max_connections)
        self._max_pools = -(-max_connections // self.shard_size)
        self._keepalive = max_keepalive_connections
        self._expiry = keepalive_expiry
        self._ssl = verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify=verify)
        self._pools: dict[tuple[bytes, bytes, int | None], list[_Pool]] = {}

    def _pool_for(self, url: httpx.URL) -> _Pool:
        pools = self._pools.get((url.raw_scheme, url.raw_host, url.port))
        if pools is None:
            pools = self._pools[(url.raw_scheme, url.raw_host, url.port)] = []
        best: _Pool | None = None
        for pool in pools:
            if best is None or pool.in_flight < best.in_flight:
                best = pool
        if (best is None or best.in_flight >= self.shard_size) and len(pools) < self._max_pools:
            # the first pools keep up to all their connections alive, later ones fewer: about
            # max_keepalive_connections idle connections per origin in all (at least one per pool)
            keep = max(1, min(self.shard_size, self._keepalive - len(pools) * self.shard_size))
            limits = httpx.Limits(
                max_connections=self.shard_size, max_keepalive_connections=keep, keepalive_expiry=self._expiry
            )
            best = _Pool(httpx.AsyncHTTPTransport(verify=self._ssl, limits=limits))
            pools.append(best)
        assert best is not None
        return best

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send *request* through the least busy pool of its origin."""
        pool = self._pool_for(request.url)
        pool.in_flight += 1
        try:
            response = await pool.transport.handle_async_request(request)
        except BaseException:
            pool.in_flight -= 1
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=_Releasing(response.stream, pool),
            extensions=response.extensions,
        )

    @property
    def in_flight(self) -> int:
        """Requests sent and not yet closed, over every pool."""
        return sum(p.in_flight for pools in self._pools.values() for p in pools)

    def pools(self) -> dict[str, list[int]]:
        """In-flight requests per pool, by origin (for tests and diagnostics)."""
        return {
            f"{scheme.decode()}://{host.decode()}:{port}": [p.in_flight for p in pools]
            for (scheme, host, port), pools in self._pools.items()
        }

    async def aclose(self) -> None:
        """Close every pool."""
        pools = [p for ps in self._pools.values() for p in ps]
        self._pools.clear()
        for pool in pools:
            await pool.transport.aclose()
