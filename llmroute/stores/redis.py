"""The Redis store: budgets, rate limits and key/values shared by a fleet of processes.

``pip install llmroute[redis]`` (the ``redis`` package). Each budget and bucket operation is one
server-side Lua script, so it is atomic across every worker: a reserve checks and holds every
counter of an attempt at once, a settle releases the hold and records what was spent. Counters
expire with their window (plus the hold TTL); holds are listed in a sorted set by expiry, and one
whose process died is charged in full by the next reserve after it expires.

Keys are ``{<prefix>}:b:...`` (budget counters), ``{<prefix>}:h:<id>`` (holds),
``{<prefix>}:holds`` (the expiry index), ``{<prefix>}:t:<id>`` (released ids),
``{<prefix>}:rl:...`` (token buckets) and ``{<prefix>}:kv:<namespace>:<key>`` (the key/value seam).
The braces make every key hash to one Redis Cluster slot, so the scripts also run on a cluster.

Under asyncio the store uses ``redis.asyncio``; under trio (which ``redis.asyncio`` does not
support) the same calls run on the synchronous client in a worker thread. Every call is bounded by
*timeout_s* (connect, read, waiting for a pooled connection); a Redis that cannot be reached in that
time raises :class:`~llmroute.stores.StoreUnavailableError`. Windows, hold expiry and bucket refills
use the caller's wall clock: keep the fleet's clocks in sync (NTP).

Durability is Redis's: a Redis restarted without persistence forgets what was spent. Run it with
``appendonly yes`` (``appendfsync always`` to lose nothing) when a budget must survive a restart.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from typing import Any

import anyio.to_thread

from . import Bucket, Counter, Refusal, StoreUnavailableError

__all__ = ["RedisStore"]

#: How long a released reserve's id is remembered (a reserve arriving later holds nothing).
_TOMBSTONE_MS = 3_600_000
#: Expired holds charged per reserve (the rest on the next ones).
_EXPIRE_BATCH = 16

# KEYS: holds index, this hold, its tombstone, counters...
# ARGV: hold id, amount, now, hold expiry time, hold key prefix, then (limit, ttl_ms) per counter.
_RESERVE = """
local holds, hold, tomb = KEYS[1], KEYS[2], KEYS[3]
for _, hid in ipairs(redis.call('ZRANGEBYSCORE', holds, '-inf', ARGV[3], 'LIMIT', 0, BATCH)) do
  local hk = ARGV[5] .. hid
  local h = redis.call('HMGET', hk, 'amount', 'keys')
  if h[1] and h[1] ~= '0' then
    for ck in string.gmatch(h[2], '[^\\n]+') do
      if redis.call('EXISTS', ck) == 1 then
        redis.call('HINCRBY', ck, 'held', '-' .. h[1])
        redis.call('HINCRBY', ck, 'spent', h[1])
      end
    end
  end
  redis.call('DEL', hk)
  redis.call('ZREM', holds, hid)
end
if redis.call('EXISTS', tomb) == 1 or redis.call('EXISTS', hold) == 1 then
  return -1
end
local amount = tonumber(ARGV[2])
local best, committed, held, room = -1, 0, 0, nil
for i = 4, #KEYS do
  local v = redis.call('HMGET', KEYS[i], 'spent', 'held')
  local c = (tonumber(v[1]) or 0) + (tonumber(v[2]) or 0)
  local limit = tonumber(ARGV[6 + 2 * (i - 4)])
  if c + amount > limit and (room == nil or limit - c < room) then
    best, committed, held, room = i - 4, c, tonumber(v[2]) or 0, limit - c
  end
end
if best >= 0 then
  return {best, committed, held}
end
local keys = {}
for i = 4, #KEYS do
  local ck = KEYS[i]
  redis.call('HINCRBY', ck, 'held', ARGV[2])
  redis.call('HSETNX', ck, 'spent', '0')
  local ttl = tonumber(ARGV[7 + 2 * (i - 4)])
  if ttl > 0 and redis.call('PTTL', ck) < ttl then
    redis.call('PEXPIRE', ck, ttl)
  end
  keys[#keys + 1] = ck
end
redis.call('HSET', hold, 'amount', ARGV[2], 'keys', table.concat(keys, '\\n'))
redis.call('ZADD', holds, ARGV[4], ARGV[1])
return -1
""".replace("BATCH", str(_EXPIRE_BATCH))

# KEYS: holds index, this hold, its tombstone.  ARGV: hold id, actual, cancelled (0/1), tombstone ms.
_SETTLE = """
local h = redis.call('HMGET', KEYS[2], 'amount', 'keys')
if not h[1] then
  if ARGV[3] == '1' then
    redis.call('SET', KEYS[3], '1', 'PX', ARGV[4])
  end
  return 0
end
for ck in string.gmatch(h[2], '[^\\n]+') do
  if redis.call('EXISTS', ck) == 1 then
    if h[1] ~= '0' then
      redis.call('HINCRBY', ck, 'held', '-' .. h[1])
    end
    redis.call('HINCRBY', ck, 'spent', ARGV[2])
  end
end
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[1], ARGV[1])
return 1
"""

# KEYS: counters.  ARGV: actual, then ttl_ms per counter.
_CHARGE = """
for i, ck in ipairs(KEYS) do
  redis.call('HINCRBY', ck, 'spent', ARGV[1])
  local ttl = tonumber(ARGV[i + 1])
  if ttl > 0 and redis.call('PTTL', ck) < ttl then
    redis.call('PEXPIRE', ck, ttl)
  end
end
return 1
"""

_BUCKET_STATE = """
local function state(k, cap, rate, now)
  local v = redis.call('HMGET', k, 'level', 'last', 'nb')
  local level = tonumber(v[1]) or cap
  local last = tonumber(v[2]) or now
  local nb = tonumber(v[3]) or 0
  local start = math.max(last, nb)
  if now > start then
    level = math.min(cap, level + (now - start) * rate)
  end
  return level, math.max(last, now), nb
end
local function save(k, level, last, nb, cap, rate, now)
  redis.call('HSET', k, 'level', tostring(level), 'last', tostring(last), 'nb', tostring(nb))
  redis.call('PEXPIRE', k, math.ceil((math.max(nb - now, 0) + cap / rate + 60) * 1000))
end
"""

# KEYS: buckets.  ARGV: now, then (capacity, rate, amount) per bucket.  Returns the wait as a string.
_TAKE = (
    _BUCKET_STATE
    + """
local now = tonumber(ARGV[1])
local wait = 0
local st = {}
for i, k in ipairs(KEYS) do
  local cap, rate, n = tonumber(ARGV[3 * i - 1]), tonumber(ARGV[3 * i]), tonumber(ARGV[3 * i + 1])
  if n > cap then
    return 'inf'
  end
  local level, last, nb = state(k, cap, rate, now)
  st[i] = {level, last, nb}
  if level < n then
    wait = math.max(wait, math.max(0, nb - now) + (n - level) / rate)
  end
end
for i, k in ipairs(KEYS) do
  local cap, rate, n = tonumber(ARGV[3 * i - 1]), tonumber(ARGV[3 * i]), tonumber(ARGV[3 * i + 1])
  local level = st[i][1]
  if wait == 0 then
    level = level - n
  end
  save(k, level, st[i][2], st[i][3], cap, rate, now)
end
return tostring(wait)
"""
)

# KEYS: bucket.  ARGV: now, capacity, rate, level, refill_at (or '').
_CAP = (
    _BUCKET_STATE
    + """
local now, cap, rate = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local level, last, nb = state(KEYS[1], cap, rate, now)
local new = tonumber(ARGV[4])
if new < level then
  level = math.max(new, 0)
  if ARGV[5] ~= '' and tonumber(ARGV[5]) > now then
    nb = math.max(nb, tonumber(ARGV[5]))
  end
end
save(KEYS[1], level, last, nb, cap, rate, now)
return 1
"""
)

# KEYS: key.  ARGV: delta, ttl_ms (0: keep).
_ADD = """
local v = redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
if tonumber(ARGV[2]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return v
"""

_SCRIPTS = {"reserve": _RESERVE, "settle": _SETTLE, "charge": _CHARGE, "take": _TAKE, "cap": _CAP, "add": _ADD}


def _ms(seconds: float | None) -> int:
    return 0 if seconds is None else max(1, math.ceil(seconds * 1000))


def _on_asyncio() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class RedisStore:
    """A :class:`~llmroute.stores.Store` in Redis, shared by every process that uses the same *url*
    and *prefix* (see the module docstring).

    *timeout_s* bounds every operation; *max_connections* caps the connections per process (calls
    beyond it wait for one, within the timeout).
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "llmroute",
        timeout_s: float = 2.0,
        max_connections: int = 64,
    ) -> None:
        try:
            import redis  # noqa: F401
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("the Redis store needs the redis package: pip install 'llmroute[redis]'") from exc
        self.url = url
        self.prefix = prefix
        self.timeout_s = timeout_s
        self.max_connections = max_connections
        self._p = "{" + prefix + "}:"
        self._aio: tuple[Any, Any, dict[str, Any]] | None = None  # (loop, client, scripts)
        self._sync: tuple[Any, dict[str, Any]] | None = None

    def __repr__(self) -> str:
        return f"RedisStore(prefix={self.prefix!r}, timeout_s={self.timeout_s})"

    # -- clients ---------------------------------------------------------------------------
    def _pool_options(self) -> dict[str, Any]:
        return {
            "max_connections": self.max_connections,
            "timeout": self.timeout_s,
            "socket_timeout": self.timeout_s,
            "socket_connect_timeout": self.timeout_s,
            "decode_responses": True,
        }

    def _aio_client(self) -> tuple[Any, dict[str, Any]]:
        loop = asyncio.get_running_loop()
        if self._aio is None or self._aio[0] is not loop:
            import redis.asyncio
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            options = {**self._pool_options(), "retry": Retry(NoBackoff(), 0)}  # bounded by timeout_s, no retries
            pool = redis.asyncio.BlockingConnectionPool.from_url(self.url, **options)
            client = redis.asyncio.Redis(connection_pool=pool)
            self._aio = (loop, client, {name: client.register_script(src) for name, src in _SCRIPTS.items()})
        return self._aio[1], self._aio[2]

    def _sync_client(self) -> tuple[Any, dict[str, Any]]:
        if self._sync is None:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            options = {**self._pool_options(), "retry": Retry(NoBackoff(), 0)}
            pool = redis.BlockingConnectionPool.from_url(self.url, **options)
            client = redis.Redis(connection_pool=pool)
            self._sync = (client, {name: client.register_script(src) for name, src in _SCRIPTS.items()})
        return self._sync

    async def _run(self, call: Callable[[Any, dict[str, Any]], Any]) -> Any:
        """Run *call(client, scripts)* on the asyncio client, or in a thread on the sync one (trio)."""
        import redis.exceptions

        try:
            if _on_asyncio():
                client, scripts = self._aio_client()
                return await call(client, scripts)
            client, scripts = self._sync_client()
            return await anyio.to_thread.run_sync(lambda: call(client, scripts))
        except (redis.exceptions.RedisError, OSError) as exc:
            raise StoreUnavailableError(f"Redis unavailable: {type(exc).__name__}: {exc}") from exc

    async def _script(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        return await self._run(lambda client, scripts: scripts[name](keys=list(keys), args=list(args)))

    # -- budgets ---------------------------------------------------------------------------
    async def reserve(
        self, hold_id: str, amount: int, counters: Sequence[Counter], *, now: float, hold_ttl_s: float
    ) -> Refusal | None:
        """Hold *amount* on every counter or none (see :meth:`llmroute.stores.Store.reserve`)."""
        p = self._p
        keys = [f"{p}holds", f"{p}h:{hold_id}", f"{p}t:{hold_id}", *(p + c.key for c in counters)]
        args: list[Any] = [hold_id, str(int(amount)), repr(now), repr(now + hold_ttl_s), f"{p}h:"]
        for c in counters:
            args += [str(int(c.limit)), str(_ms(c.ttl_s))]
        result = await self._script("reserve", keys, args)
        if isinstance(result, list):
            return Refusal(int(result[0]), int(result[1]), int(result[2]))
        return None

    async def settle(self, hold_id: str, actual: int, *, now: float, cancelled: bool = False) -> bool:
        """Replace the hold with *actual* (see :meth:`llmroute.stores.Store.settle`)."""
        p = self._p
        keys = [f"{p}holds", f"{p}h:{hold_id}", f"{p}t:{hold_id}"]
        args = [hold_id, str(int(actual)), "1" if cancelled else "0", str(_TOMBSTONE_MS)]
        return bool(await self._script("settle", keys, args))

    async def charge(self, actual: int, counters: Sequence[Counter]) -> None:
        """Add *actual* to each counter's spending, without a hold."""
        if counters:
            keys = [self._p + c.key for c in counters]
            await self._script("charge", keys, [str(int(actual)), *(str(_ms(c.ttl_s)) for c in counters)])

    async def counter(self, key: str) -> tuple[int, int]:
        """``(spent, held)`` of a counter."""
        spent, held = await self._run(lambda client, _: client.hmget(self._p + key, "spent", "held"))
        return int(spent or 0), int(held or 0)

    async def open_holds(self) -> int:
        """Holds not settled or charged yet (expired ones are charged by the next reserve)."""
        return int(await self._run(lambda client, _: client.zcard(f"{self._p}holds")))

    # -- token buckets ---------------------------------------------------------------------
    async def take(self, buckets: Sequence[Bucket], amounts: Sequence[float], *, now: float) -> float:
        """Take *amounts* from every bucket or none; the seconds to wait when they do not fit."""
        args: list[Any] = [repr(now)]
        for b, n in zip(buckets, amounts):
            args += [repr(float(b.capacity)), repr(float(b.rate)), repr(float(n))]
        result = await self._script("take", [self._p + b.key for b in buckets], args)
        return math.inf if result == "inf" else float(result)

    async def cap_bucket(self, bucket: Bucket, level: float, *, now: float, refill_at: float | None = None) -> None:
        """Lower a bucket to *level* (and hold its refill until *refill_at*)."""
        args = [repr(now), repr(float(bucket.capacity)), repr(float(bucket.rate)), repr(float(level))]
        args.append("" if refill_at is None else repr(refill_at))
        await self._script("cap", [self._p + bucket.key], args)

    # -- key/value -------------------------------------------------------------------------
    def _kv(self, namespace: str, key: str) -> str:
        return f"{self._p}kv:{namespace}:{key}"

    async def get(self, namespace: str, key: str) -> str | None:
        """The value under *namespace*/*key*."""
        full = self._kv(namespace, key)
        return await self._run(lambda client, _: client.get(full))

    async def put(self, namespace: str, key: str, value: str, *, ttl_s: float | None = None) -> None:
        """Store *value* (expiring after *ttl_s*)."""
        full, px = self._kv(namespace, key), _ms(ttl_s) or None
        await self._run(lambda client, _: client.set(full, value, px=px))

    async def add(self, namespace: str, key: str, delta: float, *, ttl_s: float | None = None) -> float:
        """Add *delta* to the number under *namespace*/*key*; return the sum."""
        return float(await self._script("add", [self._kv(namespace, key)], [repr(float(delta)), str(_ms(ttl_s))]))

    async def aclose(self) -> None:
        """Close the connections of this store."""
        aio, self._aio = self._aio, None
        if aio is not None:
            try:
                await aio[1].aclose()
            except Exception:  # a client of another (closed) loop
                pass
        sync, self._sync = self._sync, None
        if sync is not None:
            sync[0].close()
