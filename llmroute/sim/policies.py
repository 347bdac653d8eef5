"""The policies a scenario compares, all behind the engine's :class:`~llmroute.sim.engine.Policy`.

- ``official-only``: the single baseline provider, retries only.
- ``static cheapest``: providers by list price for the median request, fixed for the whole run.
- ``round robin``: each request starts at the next provider; fallback continues around the ring.
- ``mean-of-last-10``: LiteLLM's latency routing as its ``lowest_latency`` strategy works for
  streams: the mean TTFT of each provider's last 10 *completed* requests, lowest first, untried
  providers first; a failed attempt adds a 1000 s penalty sample (what recent LiteLLM versions do;
  older ones recorded nothing). It learns only when a call completes.
- ``llmroute``: the real :class:`~llmroute.health.HealthTracker` (with its circuit breakers) fed
  by every attempt on the engine's virtual clock, and the real
  :func:`~llmroute.policy.selection.select`, with the scenario's ``selection`` settings.
- ``oracle``: knows each provider's outcome for this request before sending (hindsight), and
  picks the best under the scenario's objective: the upper bound, not a policy one could run.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Sequence

from ..health import HealthSettings, HealthTracker
from ..policy.selection import Option, SelectionSettings, route_order, select
from ..types import Attempt
from .engine import Engine, Request
from .world import World

__all__ = ["LLMRoute", "MeanOfLast10", "OfficialOnly", "Oracle", "RoundRobin", "StaticCheapest"]


class _Quiet:
    """No-op attempt callbacks."""

    def started(self, attempt: Attempt, now: float) -> None:
        pass

    def finished(self, attempt: Attempt, error: BaseException | None, now: float) -> None:
        pass


class OfficialOnly(_Quiet):
    """Only the baseline provider."""

    name = "official-only"

    def __init__(self, provider: str) -> None:
        self.provider = provider

    def order(self, request: Request, now: float) -> list[str]:
        return [self.provider]


class StaticCheapest(_Quiet):
    """Cheapest list price first (for the median request), always."""

    name = "static cheapest"

    def __init__(self, by_price: Sequence[str]) -> None:
        self.by_price = list(by_price)

    def order(self, request: Request, now: float) -> list[str]:
        return self.by_price


class RoundRobin(_Quiet):
    """Each request starts one provider further round the ring."""

    name = "round robin"

    def __init__(self, providers: Sequence[str]) -> None:
        self.providers = list(providers)
        self._next = 0

    def order(self, request: Request, now: float) -> list[str]:
        i = self._next
        self._next = (i + 1) % len(self.providers)
        return self.providers[i:] + self.providers[:i]


class MeanOfLast10:
    """LiteLLM-style lowest latency: mean TTFT of the last 10 completed calls per provider."""

    name = "mean-of-last-10"
    penalty_s = 1000.0

    def __init__(self, providers: Sequence[str]) -> None:
        self.providers = list(providers)
        self.samples: dict[str, deque[float]] = {p: deque(maxlen=10) for p in providers}

    def order(self, request: Request, now: float) -> list[str]:
        def mean(p: str) -> float:
            xs = self.samples[p]
            return sum(xs) / len(xs) if xs else 0.0

        return sorted(self.providers, key=mean)

    def started(self, attempt: Attempt, now: float) -> None:
        pass

    def finished(self, attempt: Attempt, error: BaseException | None, now: float) -> None:
        if error is None and attempt.ttft_s is not None:
            self.samples[attempt.deployment].append(attempt.ttft_s)
        elif error is not None:
            self.samples[attempt.deployment].append(self.penalty_s)


class LLMRoute:
    """llmroute's real health tracking, circuit breakers and selection, on the engine's clock."""

    name = "llmroute"

    def __init__(
        self,
        world: World,
        settings: SelectionSettings,
        health: HealthSettings,
        clock: Callable[[], float],
        *,
        seed: int = 0,
    ) -> None:
        self.settings = settings
        self.tracker = HealthTracker(health, clock=clock)
        self.options = [Option(p.name, p.name, p.price) for p in world.providers.values()]
        for o in self.options:
            self.tracker.register(o.deployment, model="model", provider=o.provider)
        self.rng = random.Random(seed)
        self.decisions = 0

    def order(self, request: Request, now: float) -> list[str]:
        tr = self.tracker
        decision = select(
            "model",
            self.options,
            [tr.get(o.deployment) for o in self.options],
            self.settings,
            input_tokens=request.input_tokens,
            output_tokens=request.output_tokens,
            rng=self.rng,
            in_flight=[tr.in_flight(o.deployment) for o in self.options],
        )
        self.decisions += 1
        order, _ = route_order(["model"], {"model": decision})
        return order

    def started(self, attempt: Attempt, now: float) -> None:
        self.tracker.attempt_started(attempt)

    def finished(self, attempt: Attempt, error: BaseException | None, now: float) -> None:
        self.tracker.attempt_finished(attempt, error)


class Oracle(_Quiet):
    """Hindsight: sees every provider's outcome for the request before choosing."""

    name = "oracle"

    def __init__(self, engine_ref: Callable[[], Engine], objective: str, max_ttft_s: float | None) -> None:
        self.engine_ref = engine_ref
        self.objective = objective
        self.max_ttft_s = max_ttft_s

    def order(self, request: Request, now: float) -> list[str]:
        engine = self.engine_ref()
        scored = []
        for name, p in engine.world.providers.items():
            out = engine.outcome(name, request, 1, spend=False)
            cost = p.median_request_cost(request.input_tokens, request.output_tokens)
            if out.kind != "ok":
                key: tuple[float, ...] = (2.0, cost)
            elif self.objective == "throughput":
                key = (0.0, out.duration_s)
            elif self.max_ttft_s is not None and out.ttft_s is not None and out.ttft_s > self.max_ttft_s:
                key = (1.0, out.ttft_s, cost)  # misses the TTFT target: only if nothing else succeeds
            else:
                key = (0.0, cost)
            scored.append((key, name))
        scored.sort()
        return [name for _, name in scored]
