"""llmroute demo: route a few dozen varied prompts through a realistic config, offline.

    python examples/demo.py            # add --quiet for the summary only

A local fleet of fake providers (``llmroute.testing``) speaks the real OpenAI, Anthropic and
Gemini wire formats over loopback HTTP, with realistic latencies and a scripted handful of
faults (429 with Retry-After, 5xx, a stalled provider, a dropped stream), so you can watch
retries and fallbacks happen. Prices come from the shipped price table (litellm 1.109.1); the
``auto`` route uses the embedded ONNX predictor, the ``smart`` route is a cascade (a cheap model
answers, checks on its answer decide whether to escalate), the ``fast`` route picks among the
providers of one model by their live health and hedges a stalled request, and a daily budget
covers everything. Nothing leaves this machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from typing import Any

import anyio

import llmroute
from llmroute.testing import FakeProvider, FakeReply, Fault, Fleet

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def fleet() -> Fleet:
    """Five fake providers with different speeds (seconds, tokens/s)."""

    def weather(request: Any) -> str | FakeReply:
        if "tools" in request and request.get("messages", [{}])[-1].get("role") == "user":
            return FakeReply(tool_calls=[("get_weather", {"city": "Paris"})])
        last = str(request.get("messages", [{}])[-1].get("content", ""))
        if "clips" in last:  # a cheap model's worked answer with a slip in its arithmetic
            return "In May she sold 48 / 2 = 24 clips. Altogether 48 + 24 = 62 clips.\n#### 62"
        if "Canberra" in last:
            return "The capital of Australia is Canberra, chosen in 1908 as a compromise."
        return "It is 18 degrees and sunny in Paris."

    return Fleet(
        [
            FakeProvider("openai", api="openai", ttft_s=0.06, tokens_per_s=400, reply=weather),
            FakeProvider("together", api="openai", ttft_s=0.09, tokens_per_s=300),
            FakeProvider("fireworks", api="openai", ttft_s=0.05, tokens_per_s=500),
            FakeProvider("anthropic", api="anthropic", ttft_s=0.08, tokens_per_s=350),
            FakeProvider("gemini", api="gemini", ttft_s=0.05, tokens_per_s=600),
        ]
    )


def config(f: Fleet) -> dict[str, Any]:
    """A realistic config: five models, seven deployments, five routes, a daily budget."""

    def prov(name: str, api: str) -> dict[str, Any]:
        p: dict[str, Any] = {"api": api, "base_url": f.base_url(name), "api_key": f"sk-demo-{name}"}
        return p

    return {
        "providers": {
            "openai": prov("openai", "openai"),
            "together": prov("together", "openai"),
            "fireworks": prov("fireworks", "openai"),
            "anthropic": prov("anthropic", "anthropic"),
            "gemini": prov("gemini", "gemini"),
        },
        "models": {
            "llama-3.3-70b": {
                "deployments": [
                    {
                        "provider": "fireworks",
                        "model": "accounts/fireworks/models/llama-v3p3-70b-instruct",
                        "price_key": "fireworks_ai/accounts/fireworks/models/llama-v3p3-70b-instruct",
                    },
                    {
                        "provider": "together",
                        "model": "meta-llama/Llama-3.3-70B-Instruct-Turbo",
                        "price_key": "together_ai/meta-llama/Llama-3.3-70B-Instruct-Turbo",
                    },
                ],
                "predictor": {"like": "meta/llama-2-70b-chat"},
            },
            "gpt-4o-mini": {
                "deployments": [{"provider": "openai", "model": "gpt-4o-mini"}],
                "predictor": {"tier": "medium"},
            },
            "gemini-2.5-flash": {
                "deployments": [
                    {"provider": "gemini", "model": "gemini-2.5-flash", "price_key": "gemini/gemini-2.5-flash"}
                ],
                "predictor": {"tier": "large"},
            },
            "claude-haiku-4-5": {
                "deployments": [{"provider": "anthropic", "model": "claude-haiku-4-5"}],
                "predictor": {"tier": "large"},
            },
            "gpt-4o": {"deployments": [{"provider": "openai", "model": "gpt-4o"}], "predictor": {"tier": "frontier"}},
        },
        "routes": {
            "default": {"models": ["gpt-4o-mini", "claude-haiku-4-5", "gemini-2.5-flash"], "deadline_s": 10},
            "cheap": {"models": ["gpt-4o", "claude-haiku-4-5", "llama-3.3-70b", "gpt-4o-mini"], "strategy": "cheapest"},
            "auto": {
                "models": ["llama-3.3-70b", "gpt-4o-mini", "gemini-2.5-flash", "claude-haiku-4-5", "gpt-4o"],
                "strategy": "predictive",
                "deadline_s": 10,
            },
            "smart": {
                "models": ["gpt-4o-mini", "claude-haiku-4-5"],
                "strategy": "cascade",
                "checks": ["non_empty", "finished", "not_refusal", "math"],
                "accept": 0.6,
                "deadline_s": 10,
            },
            "fast": {
                "models": ["llama-3.3-70b"],
                "selection": {"objective": "latency", "exploration": 0},
                "hedge": {"delay_s": 0.3},
                "max_output_tokens": 512,
                "deadline_s": 10,
            },
        },
        "budgets": [{"name": "daily", "scope": "global", "limit_usd": 1.0, "window": "day"}],
        "retry": {"attempts": 2, "initial_backoff_s": 0.05, "max_backoff_s": 0.5, "jitter_s": 0.05},
        "timeout": {"connect_s": 2, "read_s": 1.0},
    }


# (route, mode, prompt or messages, extra kwargs, faults to inject before the call)
CALLS: list[tuple[str, str, Any, dict[str, Any], dict[str, list[Fault]]]] = [
    ("default", "plain", "What is the capital of Australia?", {}, {}),
    ("default", "stream", "Write a haiku about autumn rain.", {}, {}),
    (
        "default",
        "plain",
        "Translate 'good morning' into French, Spanish and German.",
        {},
        {"openai": [Fault.rate_limit(retry_after=0.2)]},
    ),
    ("default", "plain", "Name three prime numbers larger than 100.", {}, {"openai": [Fault.server_error(503)] * 2}),
    (
        "default",
        "stream",
        "Explain recursion to a five-year-old.",
        {},
        {"openai": [Fault.drop_stream(after_tokens=0)] * 2},
    ),
    ("default", "plain", "What's the weather in Paris?", {"tools": [WEATHER_TOOL]}, {}),
    (
        "default",
        "plain",
        [
            {"role": "system", "content": "You are a concise travel agent."},
            {"role": "user", "content": "I want to visit Japan in spring."},
            {"role": "assistant", "content": "Cherry blossom season, late March to early April, is lovely."},
            {"role": "user", "content": "Which city should I start in?"},
        ],
        {},
        {},
    ),
    (
        "default",
        "plain",
        "Return a JSON object with keys name and age for a fictional person.",
        {"response_format": {"type": "json_object"}},
        {},
    ),
    ("default", "plain", "Summarise the plot of Hamlet in two sentences.", {}, {"openai": [Fault.stall(3.0)] * 2}),
    ("default", "stream", "List five uses of a paperclip.", {}, {}),
    ("cheap", "plain", "What is 17 times 23?", {}, {}),
    ("cheap", "plain", "Give a synonym for 'happy'.", {}, {"openai": [Fault.rate_limit(retry_after=60)]}),
    ("cheap", "stream", "Describe the water cycle briefly.", {}, {}),
    ("cheap", "plain", "Who wrote Pride and Prejudice?", {}, {"openai": [Fault.server_error(500)] * 2}),
    ("auto", "plain", "Hi!", {}, {}),
    ("auto", "plain", "What is the boiling point of water at sea level in Celsius?", {}, {}),
    ("auto", "plain", "Which planet is known as the Red Planet? A) Venus B) Mars C) Jupiter D) Saturn", {}, {}),
    (
        "auto",
        "plain",
        "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
        "How many clips did Natalia sell altogether in April and May?",
        {},
        {},
    ),
    (
        "auto",
        "plain",
        "Prove that there are infinitely many primes p such that p ≡ 3 (mod 4). Give a rigorous "
        "argument, state every lemma you use, and discuss why the analogous argument for p ≡ 1 (mod 4) needs "
        "quadratic residues.",
        {},
        {},
    ),
    (
        "auto",
        "stream",
        "Write a Python function that returns the n-th Fibonacci number using memoisation, with "
        "type hints, a docstring and doctests.\n\n```python\ndef fib(n: int) -> int:\n    ...\n```",
        {},
        {},
    ),
    (
        "auto",
        "plain",
        'def is_palindrome(s: str) -> bool:\n    """Return True if s reads the same backwards, '
        "ignoring case and non-alphanumerics.\n    >>> is_palindrome('A man, a plan, a canal: Panama')\n    True\n"
        '    """\n',
        {},
        {},
    ),
    (
        "auto",
        "plain",
        "Let f(x) = 3x^2 - 12x + 7. Find the minimum value of f and the x at which it occurs, "
        "then compute the integral of f from 0 to 4.",
        {},
        {},
    ),
    ("auto", "plain", "Quelle est la différence entre un virus et une bactérie ?", {}, {}),
    ("auto", "plain", "请用三句话解释量子纠缠。", {}, {}),
    (
        "auto",
        "stream",
        "Design a rate limiter for a distributed API gateway serving 50k requests per second "
        "across 12 regions. Discuss token buckets vs sliding windows, consistency trade-offs, failure modes, "
        "and how you would test it.",
        {},
        {},
    ),
    (
        "auto",
        "plain",
        "The trophy doesn't fit into the brown suitcase because it is too large. What is too large? "
        "Option 1: the trophy. Option 2: the suitcase.",
        {},
        {},
    ),
    ("auto", "plain", "Thanks, that's all!", {}, {}),
    ("auto", "plain", "What's the weather in Paris right now?", {"tools": [WEATHER_TOOL]}, {}),
    (
        "auto",
        "plain",
        "A train leaves at 3:40 pm and the journey takes 2 hours 35 minutes. When does it arrive?",
        {},
        {"fireworks": [Fault.server_error(502)] * 2},
    ),
    ("auto", "stream", "Tell me a fun fact about octopuses.", {}, {}),
    ("default", "plain", "Count to five.", {"max_tokens": 20}, {}),
    ("default", "stream", "What is the speed of light?", {}, {"openai": [Fault.rate_limit(retry_after=0.1)]}),
    ("cheap", "plain", "Define photosynthesis in one sentence.", {}, {}),
    ("default", "plain", "Give me a motivational quote.", {}, {}),
    ("auto", "plain", "Solve for x: 2x + 6 = 20.", {}, {}),
    ("default", "plain", "What does HTTP 429 mean?", {}, {}),
    ("smart", "plain", "What is the capital of Australia? Canberra or Sydney?", {}, {}),
    (
        "smart",
        "plain",
        "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
        "How many clips did Natalia sell altogether?",
        {},
        {},
    ),
    ("fast", "plain", "Name a famous bridge in San Francisco.", {}, {}),
    ("fast", "stream", "Suggest a name for a pet goldfish.", {}, {"fireworks": [Fault.stall(3.0)]}),
]


def short(prompt: Any, n: int = 34) -> str:
    text = prompt if isinstance(prompt, str) else prompt[-1]["content"]
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


SHORT_ERRORS = {
    "ProviderTimeoutError": "timeout",
    "ResponseError": "broken",
    "ProviderConnectionError": "conn",
    "ContextWindowExceededError": "ctx",
    "LostRace": "lost-hedge",
}


def attempts_text(route: llmroute.RouteTrace) -> str:
    """``openai:429 → openai:ok``: each attempt's provider and outcome."""
    parts = []
    for a in route.attempts:
        outcome = "ok" if a.outcome == "ok" else str(a.status or SHORT_ERRORS.get(a.error_type or "", a.error_type))
        parts.append(f"{a.provider}:{outcome}")
    return " → ".join(parts)


async def run(quiet: bool) -> int:
    rows: list[dict[str, Any]] = []
    with fleet() as f:
        cfg = config(f)
        async with llmroute.Router.from_dict(cfg) as router:
            await router.warmup()  # load tokenizers and the predictor off the event loop, before timing
            # Fit the predictive route to "our traffic": about a third of these prompts should go
            # past the cheapest model (a sample of real, unlabelled requests is all it needs).
            sample = [prompt for route, _, prompt, _, _ in CALLS if route == "auto"]
            target = router.calibrate(sample, route="auto", strong_share=0.35)
            if not quiet:
                print(f"calibrated route 'auto' on {len(sample)} sample prompts: quality_target = {target:.3f}\n")
            if not quiet:
                print(
                    f"{'#':>2}  {'route':7} {'mode':6} {'prompt':34}  {'answered by':34} {'attempts':40} "
                    f"{'ms':>6} {'cost $':>9}"
                )
                print("-" * 148)
            for i, (route, mode, prompt, kwargs, faults) in enumerate(CALLS, 1):
                for provider, fs in faults.items():
                    f[provider].enqueue(*fs)
                t0 = time.perf_counter()
                error = None
                reply = None
                try:
                    if mode == "stream":
                        stream = router.stream(prompt, route=route, **kwargs)
                        await stream.text()
                        reply = stream.reply
                        trace = stream.route
                    else:
                        reply = await router.complete(prompt, route=route, **kwargs)
                        trace = reply.route
                except llmroute.LLMRouteError as exc:
                    error = exc
                    trace = None
                ms = (time.perf_counter() - t0) * 1000
                for name in faults:  # drop faults the route never reached
                    f[name].reset()
                row = {"route": route, "mode": mode, "ms": ms, "reply": reply, "trace": trace, "error": error}
                rows.append(row)
                if quiet:
                    continue
                if reply is None or trace is None:
                    print(f"{i:2}  {route:7} {mode:6} {short(prompt):34}  FAILED: {error}")
                    continue
                who = f"{reply.model} @ {reply.provider}"
                if reply.tool_calls:
                    who += " [tool]"
                print(
                    f"{i:2}  {route:7} {mode:6} {short(prompt):34}  {who:34} {attempts_text(trace):40} "
                    f"{ms:6.0f} {trace.cost_usd:9.6f}"
                )
                pred = trace.prediction
                if pred is not None and getattr(pred, "difficulty", None) is not None:
                    print(f"{'':20}predictor: {pred.reason}")
                for tier in trace.cascade or ():
                    models = ", ".join(tier.models)
                    print(f"{'':20}cascade tier {tier.tier + 1} ({models}): {tier.outcome}: {tier.reason}")
                for a in trace.attempts:
                    if a.hedge and not a.hedge.startswith("not hedged"):
                        print(f"{'':20}hedge: {a.hedge}")
            spent_usd, _held = await router.budget.usage("daily")  # type: ignore[union-attr]
    ok = [r for r in rows if r["reply"] is not None]
    traces = [r["trace"] for r in ok]
    attempts = sum(len(t.attempts) for t in traces)
    retries = sum(1 for t in traces for a in t.attempts if a.number > 1)
    fallbacks = sum(1 for t in traces if len({a.deployment for a in t.attempts}) > 1)
    cost = sum(t.cost_usd for t in traces)
    lat = sorted(r["ms"] for r in ok)
    by_provider = Counter(r["reply"].provider for r in ok)
    by_model = Counter(r["reply"].model for r in ok)
    print()
    print(
        f"calls: {len(rows)}   answered: {len(ok)}   failed: {len(rows) - len(ok)}   attempts: {attempts}   "
        f"retries: {retries}   calls that fell back: {fallbacks}"
    )
    print(
        f"latency ms: p50 {statistics.median(lat):.0f}   p95 {lat[int(0.95 * (len(lat) - 1))]:.0f}   max {lat[-1]:.0f}"
    )
    print(f"total cost: ${cost:.6f} (incl. failed attempts)")
    print("answered by model   : " + ", ".join(f"{m} {n}" for m, n in by_model.most_common()))
    print("answered by provider: " + ", ".join(f"{p} {n}" for p, n in by_provider.most_common()))
    print(f"daily budget: ${spent_usd:.6f} of $1.00 spent or held (every attempt's worst case reserved first)")
    return 0 if len(ok) == len(rows) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Route a few dozen prompts through a local provider fleet.")
    parser.add_argument("--quiet", action="store_true", help="print the summary only")
    args = parser.parse_args(argv)
    return anyio.run(run, args.quiet)


if __name__ == "__main__":
    sys.exit(main())
