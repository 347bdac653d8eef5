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
    cfg = base()
    mutate(cfg)
    errs = errors_of(cfg)
    assert path in errs, errs
    assert reason in errs[path]


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
    cfg = base()
    mutate(cfg)
    errs = errors_of(cfg)
    assert path in errs, errs
    assert reason in errs[path]


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
