"""Health + circuit + selection together, in virtual time: the real tracker fed by attempts, the real
policy choosing, a tiny scripted world answering. No sleeps, no I/O."""

from __future__ import annotations

from random import Random

from llmroute.circuit import CircuitSettings, CircuitState
from llmroute.costs import Price
from llmroute.errors import RateLimitError
from llmroute.health import HealthSettings, HealthTracker
from llmroute.policy.selection import Option, SelectionSettings, select
from llmroute.types import Attempt, Usage


class World:
    """Two deployments of one model; one request a second; the first choice is sent."""

    def __init__(self, settings: SelectionSettings, health: HealthSettings | None = None) -> None:
        self.now = 0.0
        self.tracker = HealthTracker(health or HealthSettings(half_life_s=60), clock=lambda: self.now)
        self.settings = settings
        self.rng = Random(7)
        self.options = [Option("fast/m", "fast", Price(0.5, 1.0)), Option("slow/m", "slow", Price(0.5, 1.0))]
        self.ttft = {"fast/m": 0.3, "slow/m": 0.6}
        self.fail: dict[str, int] = {}

    def choose(self) -> str:
        hs = [self.tracker.get(o.deployment) for o in self.options]
        return select("m", self.options, hs, self.settings, input_tokens=500, output_tokens=100, rng=self.rng).order[0]

    def call(self) -> str:
        dep = self.choose()
        a = Attempt("m", dep, dep.split("/")[0], "m", 1, 0.0, stream=True)
        self.tracker.attempt_started(a)
        if self.fail.get(dep, 0) > 0:
            self.fail[dep] -= 1
            a.duration_s, a.outcome = 0.05, "error"
            self.tracker.attempt_finished(a, RateLimitError("429", retry_after=5.0))
            return dep
        ttft = self.ttft[dep]
        a.ttft_s, a.duration_s, a.usage, a.outcome = ttft, ttft + 1.0, Usage(500, 101), "ok"
        # the clock moves on while it streams; the tracker sees it finish later (here at once,
        # stamped with the right duration)
        self.tracker.attempt_finished(a, None)
        return dep

    def run(self, seconds: int) -> list[tuple[float, str]]:
        """(seconds since this run began, deployment chosen) per request."""
        out = []
        for i in range(seconds):
            self.now += 1.0
            out.append((i + 1.0, self.call()))
        return out


def share(log: list[tuple[float, str]], dep: str, start: float, end: float) -> float:
    picks = [d for t, d in log if start < t <= end]
    return sum(d == dep for d in picks) / len(picks)


def test_a_provider_that_slows_down_loses_traffic_and_regains_it_after_recovery() -> None:
    world = World(SelectionSettings(objective={"latency": 1.0}))
    log = world.run(600)
    assert share(log, "fast/m", 300, 600) > 0.9
    world.ttft["fast/m"] = 5.0  # an incident: TTFT x17
    log = world.run(900)
    # stated bound: within 30 s (30 requests) it gets under 10 % of the traffic
    assert share(log, "fast/m", 30, 900) < 0.10
    assert share(log, "fast/m", 0, 900) > 0  # and it keeps being probed now and then
    world.ttft["fast/m"] = 0.3  # recovered
    log = world.run(600)
    # stated bound: probed again within two minutes (aging + exploration, half-life 60 s), and
    # after five minutes the main choice again
    first_back = next(t for t, d in log if d == "fast/m")
    assert first_back <= 120
    assert share(log, "fast/m", 300, 600) > 0.8


def test_a_burst_of_429s_opens_the_circuit_and_half_open_probes_close_it() -> None:
    circuit = CircuitSettings(consecutive_failures=3, open_s=20, close_after=2)
    world = World(SelectionSettings(objective={"price": 1.0}, exploration=0.0), HealthSettings(circuit=circuit))
    world.options[1] = Option("slow/m", "slow", Price(1.0, 2.0))  # fast/m is the cheap one
    world.run(10)
    world.fail["fast/m"] = 3
    log = world.run(3)
    assert [d for _, d in log] == ["fast/m"] * 3
    assert world.tracker.get("fast/m").circuit.state is CircuitState.OPEN
    log = world.run(19)  # open: all traffic elsewhere, no request at all to fast/m
    assert {d for _, d in log} == {"slow/m"}
    log = world.run(2)  # cooldown over: half-open, the probes succeed and close it
    assert world.tracker.get("fast/m").circuit.state is CircuitState.CLOSED
    assert [d for _, d in log][-1] == "fast/m"
    assert world.tracker.get("fast/m").circuit.trips == 1
