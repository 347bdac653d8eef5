"""A discrete-event replay: requests arrive, a policy orders providers, attempts run in virtual time.

Each request is a small generator that asks for attempts and waits; the engine keeps one event
queue (arrivals, first tokens, attempt ends, retry waits) and a virtual clock the policies read.
The executor rules mirror :mod:`llmroute.execute`: up to ``attempts`` tries per provider, a 429's
``Retry-After`` is waited when at most ``max_retry_after_s`` (else the next provider at once),
other retryable errors back off ``initial_backoff_s * 2**(n-1)`` plus jitter, then fall back.
Policies see every attempt through the same calls the router's hooks get (start, first token,
end with the error as the real exception type), so llmroute's real health tracker runs unchanged.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import ProviderError, ProviderTimeoutError, RateLimitError, ServerError
from ..types import Attempt, Usage
from .world import Bucket, Outcome, World

__all__ = ["Engine", "ExecutorRules", "Policy", "Request", "RequestResult"]


@dataclass(frozen=True, slots=True)
class Request:
    """One arrival of the replayed trace."""

    index: int
    arrival_s: float
    input_tokens: int
    output_tokens: int
    #: Uniforms fixed per (provider, attempt): ``draws[provider][attempt - 1]`` holds 4.
    draws: dict[str, list[tuple[float, float, float, float]]] = field(repr=False)


@dataclass(slots=True)
class RequestResult:
    """How one request went under one policy."""

    index: int
    arrival_s: float
    ok: bool
    ttft_s: float | None
    e2e_s: float | None
    output_tokens: int
    cost_usd: float
    provider: str | None
    attempts: int
    tokens_per_s: float | None = None


class Policy(Protocol):
    """What a routing policy provides to the engine."""

    name: str

    def order(self, request: Request, now: float) -> list[str]:
        """Providers to try, in order."""
        ...

    def started(self, attempt: Attempt, now: float) -> None:
        """An attempt was sent."""
        ...

    def finished(self, attempt: Attempt, error: BaseException | None, now: float) -> None:
        """An attempt ended (``attempt.ttft_s`` is set if a token came)."""
        ...


@dataclass(frozen=True)
class ExecutorRules:
    """The retry/fallback rules every policy runs under (llmroute's defaults)."""

    attempts: int = 2
    initial_backoff_s: float = 0.25
    max_backoff_s: float = 8.0
    jitter_s: float = 0.25
    max_retry_after_s: float = 20.0


def _error(outcome: Outcome, provider: str) -> ProviderError:
    if outcome.kind == "rate_limit":
        return RateLimitError("simulated 429", retry_after=outcome.retry_after_s, provider=provider, status=429)
    if outcome.kind == "timeout":
        return ProviderTimeoutError("simulated timeout", provider=provider)
    return ServerError("simulated 5xx", provider=provider, status=500)


class Engine:
    """Runs one policy over one world and request list; :meth:`run` returns one result per request."""

    def __init__(
        self,
        world: World,
        requests: Sequence[Request],
        policy: Policy,
        *,
        rules: ExecutorRules | None = None,
        seed: int = 0,
    ) -> None:
        self.world = world
        self.requests = requests
        self.policy = policy
        self.rules = rules or ExecutorRules()
        self.now = 0.0
        self._rng = random.Random(seed)
        self.buckets: dict[str, Bucket] = {
            name: Bucket(p.rpm_limit) for name, p in world.providers.items() if p.rpm_limit is not None
        }
        self._queue: list[tuple[float, int, int, Any]] = []
        self._seq = 0

    def _push(self, t: float, kind: int, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (t, self._seq, kind, payload))

    def outcome(self, provider: str, request: Request, number: int, *, spend: bool = True) -> Outcome:
        """What an attempt at *provider* would do now (``spend=False``: only look, as the oracle does)."""
        draws = request.draws[provider]
        u = draws[min(number, len(draws)) - 1]
        return self.world.outcome(provider, self.now, request.output_tokens, u, self.buckets.get(provider), spend=spend)

    def _process(self, req: Request, result: RequestResult) -> Generator[tuple[Any, ...], Any, None]:
        rules = self.rules
        for provider in self.policy.order(req, self.now):
            number = 0
            while True:
                number += 1
                result.attempts += 1
                outcome: Outcome = yield ("attempt", provider, number)
                if outcome.kind == "ok":
                    assert outcome.ttft_s is not None
                    result.ok = True
                    result.ttft_s = self.now - outcome.duration_s + outcome.ttft_s - req.arrival_s
                    result.e2e_s = self.now - req.arrival_s
                    result.provider = provider
                    result.tokens_per_s = outcome.tokens_per_s
                    p = self.world.providers[provider].price
                    result.cost_usd += (req.input_tokens * p.input + req.output_tokens * p.output) / 1e6
                    return
                if number >= rules.attempts:
                    break
                if outcome.kind == "rate_limit" and outcome.retry_after_s is not None:
                    if outcome.retry_after_s > rules.max_retry_after_s:
                        break
                    wait = outcome.retry_after_s
                else:
                    wait = min(rules.initial_backoff_s * 2 ** (number - 1), rules.max_backoff_s)
                    wait += self._rng.uniform(0, rules.jitter_s)
                yield ("sleep", wait)

    def run(self) -> list[RequestResult]:
        """Replay every request; results in request order."""
        results = [
            RequestResult(r.index, r.arrival_s, False, None, None, r.output_tokens, 0.0, None, 0) for r in self.requests
        ]
        for r in self.requests:
            self._push(r.arrival_s, 0, (r, results[r.index], None))
        policy = self.policy
        while self._queue:
            t, _, kind, payload = heapq.heappop(self._queue)
            self.now = t
            if kind == 1:  # first token of an attempt
                attempt, started = payload
                attempt.ttft_s = t - started
                continue
            if kind == 2:  # an attempt ended: tell the policy, then resume its request
                attempt, outcome, req, res, gen = payload
                attempt.duration_s = outcome.duration_s
                error = None if outcome.kind == "ok" else _error(outcome, attempt.provider)
                if error is None:
                    attempt.outcome = "ok"
                    attempt.usage = Usage(req.input_tokens, req.output_tokens)
                else:
                    attempt.outcome = "error"
                    attempt.status = error.status
                policy.finished(attempt, error, t)
                self._step(gen, req, res, outcome)
                continue
            req, res, gen = payload
            if gen is None:
                gen = self._process(req, res)
            self._step(gen, req, res, None)
        return results

    def _step(self, gen: Generator[tuple[Any, ...], Any, None], req: Request, res: RequestResult, value: Any) -> None:
        try:
            cmd = gen.send(value)
        except StopIteration:
            return
        if cmd[0] == "sleep":
            self._push(self.now + cmd[1], 0, (req, res, gen))
            return
        _, provider, number = cmd
        outcome = self.outcome(provider, req, number)
        p = self.world.providers[provider]
        attempt = Attempt("model", provider, provider, p.price_key, number, self.now - req.arrival_s, stream=True)
        attempt.rate_limit = outcome.rate_limit  # the headers arrive with the response; read at the end
        self.policy.started(attempt, self.now)
        if outcome.ttft_s is not None:
            self._push(self.now + outcome.ttft_s, 1, (attempt, self.now))
        self._push(self.now + outcome.duration_s, 2, (attempt, outcome, req, res, gen))
