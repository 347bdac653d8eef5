"""Shared fixtures: a loopback provider fleet, router configs over it, virtual sleep."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from llmroute.testing import FakeProvider, Fleet

#: The agent fleet fixtures of the framework integration tests (tests/integrations/).
pytest_plugins = ["fleet_for_agents"]

#: A sentinel key: the security tests assert it never shows up anywhere.
SECRET = "sk-SENTINEL-DO-NOT-LEAK-0123456789"


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def fleet() -> Iterator[Fleet]:
    providers = [
        FakeProvider("oai", api="openai", api_key=SECRET),
        FakeProvider("oai2", api="openai", api_key=SECRET),
        FakeProvider("claude", api="anthropic", api_key=SECRET),
        FakeProvider("gem", api="gemini", api_key=SECRET),
        FakeProvider("small-ctx", api="openai", api_key=SECRET, context_window=50),
    ]
    with Fleet(providers) as f:
        yield f


@pytest.fixture(autouse=True)
def _reset_fleet(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "fleet" in request.fixturenames:
        f: Fleet = request.getfixturevalue("fleet")
        for name in ("oai", "oai2", "claude", "gem", "small-ctx"):
            f[name].reset()


class VirtualSleep:
    """Records requested sleeps and returns at once (virtual time)."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def vsleep() -> VirtualSleep:
    return VirtualSleep()


def provider_cfg(fleet: Fleet, name: str, api: str, **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {"api": api, "base_url": fleet.base_url(name), "api_key": SECRET}
    if api == "anthropic":
        cfg["api_version"] = "2023-06-01"
    cfg.update(extra)
    return cfg


def make_config(fleet: Fleet, **overrides: Any) -> dict[str, Any]:
    """A realistic config over the fleet: two OpenAI-compatible providers, Anthropic, Gemini."""
    price = {"input": 1.0, "output": 2.0}
    cfg: dict[str, Any] = {
        "providers": {
            "oai": provider_cfg(fleet, "oai", "openai"),
            "oai2": provider_cfg(fleet, "oai2", "openai"),
            "claude": provider_cfg(fleet, "claude", "anthropic"),
            "gem": provider_cfg(fleet, "gem", "gemini"),
        },
        "models": {
            "small": {
                "deployments": [
                    {"provider": "oai", "model": "small-1", "price": {"input": 0.1, "output": 0.4}},
                    {"provider": "oai2", "model": "small-1", "price": {"input": 0.2, "output": 0.8}},
                ]
            },
            "claude": {"deployments": [{"provider": "claude", "model": "claude-x", "price": price}]},
            "gemini": {"deployments": [{"provider": "gem", "model": "gemini-x", "price": price}]},
        },
        "routes": {
            "default": {"models": ["small", "claude", "gemini"]},
            "cheap-first": {"models": ["claude", "small"], "strategy": "cheapest"},
        },
        "retry": {"attempts": 2, "initial_backoff_s": 0.01, "max_backoff_s": 0.05, "jitter_s": 0.0},
        "timeout": {"connect_s": 2.0, "read_s": 2.0},
    }
    cfg.update(overrides)
    return cfg


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Any]:
    """A real redis-server of the session's own on a free loopback port (no persistence)."""
    from llmroute.testing.redis_server import RedisServer, RedisServerNotFound

    try:
        import redis  # noqa: F401
    except ImportError:
        pytest.skip("the redis package is not installed (pip install -e '.[test]')")
    try:
        server = RedisServer()
    except RedisServerNotFound:
        pytest.skip("redis-server not found on PATH (Debian: apt-get install redis-server)")
    with server:
        yield server


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A fresh store of each kind: the in-process one, and one on :func:`redis_server` under a
    prefix of its own (so tests sharing the server never see each other's keys)."""
    import uuid

    from llmroute.stores.memory import MemoryStore

    if request.param == "memory":
        yield MemoryStore()
        return
    from llmroute.stores.redis import RedisStore

    server = request.getfixturevalue("redis_server")
    s = RedisStore(server.url, prefix=f"t{uuid.uuid4().hex[:8]}", timeout_s=2.0)
    try:
        yield s
    finally:
        await s.aclose()
