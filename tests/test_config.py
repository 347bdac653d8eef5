"""Config validation: every bad field is named by its path, with the reason."""

from __future__ import annotations

from typing import Any

import pytest

import llmroute
from llmroute.config import load_config


def base() -> dict[str, Any]:
    return {
        "providers": {"oai": {"api": "openai", "api_key": "sk-x"}},
        "models": {"small": {"deployments": [{"provider": "oai", "model": "gpt-4o-mini"}]}},
        "routes": {"default": {"models": ["small"]}},
    }


def errors_of(cfg: Any, **kw: Any) -> dict[str, str]:
    with pytest.raises(llmroute.ConfigError) as info:
        load_config(cfg, **kw)
    return dict(info.value.errors)


def assert_names_the_field(mutate: Any, path: str, reason: str) -> None:
    """The base config changed by *mutate* fails to load with *reason* at *path*."""
    cfg = base()
    mutate(cfg)
    errs = errors_of(cfg)
    assert path in errs, errs
    assert reason in errs[path]


def test_valid_config_loads_and_prices_come_from_the_table() -> None:
    cfg = load_config(base())
    assert cfg.providers["oai"].url == "https://api.openai.com/v1"
    r = llmroute.Router(cfg)
    cand = r.plan("hi").trace.candidates[0]
    assert cand.est_cost_usd > 0


@pytest.mark.parametrize(
    ("mutate", "path", "reason"),
    [
        (lambda c: c["providers"]["oai"].update(bogus=1), "providers.oai.bogus", "Extra inputs are not permitted"),
        (lambda c: c["providers"]["oai"].update(api="cohere"), "providers.oai.api", "Input should be"),
        (lambda c: c["providers"]["oai"].update(base_url="ftp://x"), "providers.oai.base_url", "http://"),
        (
            lambda c: c["models"]["small"]["deployments"][0].update(price={"input": -1, "output": 1}),
            "models.small.deployments.0.price.input",
            "greater than or equal to 0",
        ),
        (
            lambda c: c["models"]["small"]["deployments"][0].update(price={"input": 1, "output": 1, "cache_write": -1}),
            "models.small.deployments.0.price.cache_write",
            "greater than or equal to 0",
        ),
        (lambda c: c["models"]["small"].update(deployments=[]), "models.small.deployments", "at least 1"),
        (lambda c: c["models"]["small"].update(tokenizer="gpt2"), "models.small.tokenizer", "unknown tokenizer"),
        (lambda c: c["routes"]["default"].update(strategy="random"), "routes.default.strategy", "Input should be"),
        (lambda c: c.update(extra_top_level=True), "extra_top_level", "Extra inputs are not permitted"),
        (lambda c: c["routes"]["default"].update(quality_target=1.5), "routes.default.quality_target", "less than"),
    ],
)
def test_schema_errors_name_the_field(mutate: Any, path: str, reason: str) -> None:
    assert_names_the_field(mutate, path, reason)


@pytest.mark.parametrize(
    ("mutate", "path", "reason"),
    [
        (
            lambda c: c["models"]["small"]["deployments"][0].update(provider="nope"),
            "models.small.deployments.0.provider",
            "unknown provider 'nope'",
        ),
        (
            lambda c: c["routes"]["default"].update(models=["small", "huge"]),
            "routes.default.models.1",
            "unknown model 'huge'",
        ),
        (
            lambda c: c["models"]["small"]["deployments"][0].update(model="my-private-model"),
            "models.small.deployments.0.price",
            "not in the shipped price table",
        ),
        (lambda c: c.update(default_route="nope"), "default_route", "unknown route"),
        (lambda c: c["routes"]["default"].update(quality_target=0.5), "routes.default.strategy", "predictive"),
        (
            lambda c: c["models"]["small"]["deployments"].append({"provider": "oai", "model": "gpt-4o-mini"}),
            "models.small.deployments.1.name",
            "already used",
        ),
    ],
)
def test_cross_reference_errors_name_the_field(mutate: Any, path: str, reason: str) -> None:
    assert_names_the_field(mutate, path, reason)


def test_all_errors_reported_at_once_in_the_message() -> None:
    cfg = base()
    cfg["models"]["small"]["deployments"][0]["provider"] = "nope"
    cfg["routes"]["default"]["models"] = ["ghost"]
    with pytest.raises(llmroute.ConfigError) as info:
        load_config(cfg)
    msg = str(info.value)
    assert "2 errors" in msg
    assert "models.small.deployments.0.provider" in msg and "routes.default.models.0" in msg


def test_api_key_from_environment() -> None:
    cfg = base()
    cfg["providers"]["oai"] = {"api": "openai", "api_key_env": "MY_KEY"}
    loaded = load_config(cfg, environ={"MY_KEY": "sk-from-env"})
    key = loaded.providers["oai"].api_key
    assert key is not None and key.get_secret_value() == "sk-from-env"
    errs = errors_of(cfg, environ={})
    assert "not set" in errs["providers.oai.api_key_env"]


def test_not_a_mapping() -> None:
    with pytest.raises(llmroute.ConfigError, match="must be a mapping"):
        load_config(["not", "a", "dict"])  # type: ignore[arg-type]


def test_explicit_price_overrides_table_and_unknown_model_with_price_is_fine() -> None:
    cfg = base()
    cfg["models"]["small"]["deployments"][0].update(model="my-private-model", price={"input": 0, "output": 0})
    r = llmroute.Router(cfg)
    assert r.plan("hi").trace.candidates[0].est_cost_usd == 0


def provider(**fields: Any) -> Any:
    return lambda c: c["providers"]["oai"].update(**fields)


@pytest.mark.parametrize(
    ("mutate", "path", "reason"),
    [
        (provider(base_url="http://[::1"), "providers.oai.base_url", "not a valid URL"),
        (provider(base_url="http://"), "providers.oai.base_url", "has no host"),
        (provider(base_url="https://h.example/v1?api-version=1"), "providers.oai.base_url", "query"),
        (provider(base_url="https://h.example/v1#x"), "providers.oai.base_url", "fragment"),
        (provider(base_url="https://h.example/v 1"), "providers.oai.base_url", "whitespace"),
        (provider(api_key="sk-caf\u00e9"), "providers.oai.api_key", "non-ASCII"),
        (provider(api_key="sk-a\nb"), "providers.oai.api_key", "control character"),
        (provider(api_key="sk-a\x00"), "providers.oai.api_key", "control character"),
        (provider(api_key=" \n"), "providers.oai.api_key", "empty"),
        (provider(headers={"x-team": "caf\u00e9"}), "providers.oai.headers.x-team", "non-ASCII"),
        (provider(headers={"x-team": "a\r\nX-Injected: 1"}), "providers.oai.headers.x-team", "control character"),
        (provider(headers={"x team": "a"}), "providers.oai.headers.x team", "not a valid HTTP header name"),
        (provider(headers={"x-t\u00e9am": "a"}), "providers.oai.headers.x-t\u00e9am", "not a valid HTTP header name"),
        (provider(headers={"Content-Length": "1"}), "providers.oai.headers.Content-Length", "set by the HTTP client"),
        (provider(api="anthropic", api_version="2023-06-01\n"), "providers.oai.api_version", "printable ASCII"),
        (lambda c: c.update(retry={"attempts": 2000}), "retry.attempts", "less than or equal to 100"),
        (lambda c: c.update(retry={"max_backoff_s": float("inf")}), "retry.max_backoff_s", "finite"),
        (lambda c: c.update(retry={"jitter_s": float("nan")}), "retry.jitter_s", "finite"),
        (lambda c: c["routes"]["default"].update(deadline_s=float("inf")), "routes.default.deadline_s", "finite"),
    ],
)
def test_what_would_crash_the_first_call_fails_at_load(mutate: Any, path: str, reason: str) -> None:
    assert_names_the_field(mutate, path, reason)


def test_keys_and_header_values_lose_surrounding_whitespace() -> None:
    cfg = base()
    cfg["providers"]["oai"].update(api_key="  sk-x\r\n", headers={"x-team": " blue\n", "x-id": "7"})
    loaded = load_config(cfg).providers["oai"]
    assert loaded.api_key is not None and loaded.api_key.get_secret_value() == "sk-x"
    assert {k: v.get_secret_value() for k, v in loaded.headers.items()} == {"x-team": "blue", "x-id": "7"}
    cfg["providers"]["oai"] = {"api": "openai", "api_key_env": "MY_KEY"}
    key = load_config(cfg, environ={"MY_KEY": "sk-from-file\n"}).providers["oai"].api_key
    assert key is not None and key.get_secret_value() == "sk-from-file"
    assert "is not set or empty" in errors_of(cfg, environ={"MY_KEY": " \n"})["providers.oai.api_key_env"]
    assert "non-ASCII" in errors_of(cfg, environ={"MY_KEY": "sk-\u00e9"})["providers.oai.api_key_env"]


def test_base_url_with_a_path_port_and_ipv6_host_loads() -> None:
    for url in ("http://[::1]:8080/v1/", "https://proxy.internal:8443/openai/v1", "http://127.0.0.1:9"):
        cfg = base()
        cfg["providers"]["oai"]["base_url"] = url
        assert load_config(cfg).providers["oai"].url == url.rstrip("/")


def test_a_config_instance_is_checked_too() -> None:
    from llmroute.config import Config

    cfg = base()
    cfg["providers"]["oai"]["api_key"] = "sk-\u00e9"
    errs = errors_of(Config.model_validate(cfg))
    assert "non-ASCII" in errs["providers.oai.api_key"]
