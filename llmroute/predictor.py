"""The in-process predictor: how hard is this prompt, and how well will each model answer it?

A small ONNX model shipped in ``models/`` (``llmroute/_models/`` in a wheel) maps a chat request
to a prompt latent ``z``: ``z[0]`` is the easiness ``-logit(difficulty)``, the rest come from
hashed token n-grams and structural features (see ``llmroute/_features.py``). Each model is a
vector ``v = (theta, a)``; its predicted quality is ``sigmoid(theta + a . z)`` (IRT-style).
The prompt's difficulty (0..1) comes from a
head over the structural features (length, numbers, code, maths, ...) and a static token table,
fitted to rank prompts by failure rate (harder prompts within a task, and harder kinds of task)
and calibrated to the pool's mean failure rate; it is what a route relies on for models the
predictor does not know, and what ``python -m llmroute.eval`` routes by.

A model outside the training pool needs no retraining: give it a :class:`ModelProfile` with
``like=`` (a pool model it resembles), ``tier=`` (``small``/``medium``/``large``/``frontier``),
or a ``vector`` fitted from a handful of labelled prompts (``llmroute.calibration``). With none of
those, ``known[name] is False`` and its predicted quality is ``1 - difficulty`` (the predicted
success rate of an average pool model): routers then rely on the difficulty alone.

The ONNX session is created on first use (one per predictor, one intra-op and one inter-op
thread) and runs inline: a prediction costs well under a millisecond. ``import
llmroute.predictor`` imports neither onnxruntime nor the tokenizer.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from llmroute._onnx import ShippedModel

try:
    from llmroute.errors import LLMRouteError as _Base
except ImportError:  # pragma: no cover - errors.py not present
    _Base = Exception  # type: ignore[assignment,misc]

__all__ = [
    "FAMILIES",
    "PRICE_EXPONENT",
    "ModelProfile",
    "Prediction",
    "Predictor",
    "PredictorUnavailableError",
    "default_model_dir",
]

TIERS = ("small", "medium", "large", "frontier")
#: The graph's outputs, named (``run(None, ...)`` looks them up on every call).
_OUTPUTS = ["quality", "latent", "difficulty"]
_log = logging.getLogger("llmroute.predictor")


class PredictorUnavailableError(_Base):  # type: ignore[misc,valid-type]
    """The predictor's model files are missing, unreadable or corrupt.

    Routers catch it and keep the route's configured order instead of failing the call.
    """


@dataclass(frozen=True, slots=True)
class ModelProfile:
    """How the predictor represents one candidate model.

    Resolution order: ``vector`` (fitted with ``llmroute calibrate``), the ``name`` itself when it
    is in the training pool, ``like`` (a pool model it resembles), ``tier``; else the
    model is not known and its predicted quality is ``1 - difficulty``.
    """

    name: str
    like: str | None = None
    tier: str | None = None
    vector: tuple[float, ...] | None = None
    #: For a model the predictor does not know: its price divided by the geometric mean price of
    #: the models it is routed among (the router fills it in). Its predicted quality is then
    #: ``1 - difficulty x price_ratio ** -PRICE_EXPONENT`` instead of ``1 - difficulty``.
    price_ratio: float | None = None

    @classmethod
    def from_config(cls, name: str, cfg: Mapping[str, Any] | None) -> ModelProfile:
        """Build from a config's ``models.<name>.predictor`` dict (``like``/``tier``/``vector``)."""
        if not cfg:
            return cls(name)
        vec = cfg.get("vector")
        return cls(
            name,
            like=cfg.get("like"),
            tier=cfg.get("tier"),
            vector=tuple(float(x) for x in vec) if vec is not None else None,
        )


@dataclass(frozen=True, slots=True)
class Prediction:
    """What the predictor says about one request, for the route decision and its trace."""

    #: 0..1, higher = harder: predicted failure rate of an average training-pool model.
    difficulty: float
    #: Predicted probability of a good answer, per candidate model (the caller's names).
    quality: Mapping[str, float]
    #: Whether each model had a pool, ``like``, tier or fitted vector (False: quality = 1 - difficulty).
    known: Mapping[str, bool]
    #: Where each model's vector came from: ``pool``, ``like:<m>``, ``tier:<t>``, ``vector``, or
    #: ``neutral`` (unknown: quality is ``1 - difficulty``).
    source: Mapping[str, str]
    #: Prompt latent (for calibration and debugging).
    latent: tuple[float, ...]
    #: Tokens actually tokenised (after head/tail bounding).
    n_tokens: int
    #: First 12 hex digits of the ONNX file's sha256.
    model_id: str
    #: The prompt's features (``llmroute._features.Features``) the prediction was made from, kept so
    #: that learning from this prompt later (``llmroute.learning``) needs no second extraction.
    features: Any = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (for traces and logs)."""
        return {
            "difficulty": self.difficulty,
            "quality": dict(self.quality),
            "known": dict(self.known),
            "source": dict(self.source),
            "n_tokens": self.n_tokens,
            "model_id": self.model_id,
        }


#: Failure rate of a model the predictor does not know scales as ``price_ratio ** -PRICE_EXPONENT``:
#: the slope of log(failure rate) on log(mean cost per call) over RouterBench's 11 models (0.131).
PRICE_EXPONENT = 0.13

#: ``(regular expression on the lower-cased provider model id, training-pool model)``: the same
#: family *and size* as a pool model (see :meth:`Predictor.family_like`).
FAMILIES: tuple[tuple[str, str], ...] = (
    (r"gpt-4-(1106|0125|turbo)", "gpt-4-1106-preview"),
    (r"gpt-3\.5-turbo", "gpt-3.5-turbo-1106"),
    (r"claude-instant", "claude-instant-v1"),
    (r"claude-(v2|2)\b", "claude-v2"),
    (r"claude-(v1|1)\b", "claude-v1"),
    (r"mixtral-8x7b", "mistralai/mixtral-8x7b-chat"),
    (r"mistral-7b-instruct", "mistralai/mistral-7b-chat"),
    (r"mistral-7b-v0\.1$", "mistralai/Mistral-7B-v0.1"),
    (r"metamath-mistral-7b", "meta-math/MetaMath-Mistral-7B"),
    (r"dolphin-2\.6-mistral-7b", "cognitivecomputations/dolphin-2.6-mistral-7b"),
    (r"dolphin-2\.9-llama-?3-8b", "cognitivecomputations/dolphin-2.9-llama3-8b"),
    (r"chinese-mistral-7b", "itpossible/Chinese-Mistral-7B-v0.1"),
    (r"zephyr-7b", "HuggingFaceH4/zephyr-7b-beta"),
    (r"llama-?2-70b", "meta/llama-2-70b-chat"),
    (r"code-?llama-34b", "meta/code-llama-instruct-34b-chat"),
    (r"(meta-)?llama-?3-8b", "meta-llama/Meta-Llama-3-8B"),
    (r"yi-34b", "zero-one-ai/Yi-34B-Chat"),
    (r"wizardlm-13b", "WizardLM/WizardLM-13B-V1.2"),
)


def _unknown_quality(difficulty: float, price_ratio: float | None) -> float:
    """Predicted quality of a model without a vector (see :data:`PRICE_EXPONENT`)."""
    if price_ratio is None or not price_ratio > 0:
        return 1.0 - difficulty
    return min(1.0, max(0.0, 1.0 - difficulty * price_ratio**-PRICE_EXPONENT))


def _as_profile(m: ModelProfile | str) -> ModelProfile:
    return m if isinstance(m, ModelProfile) else ModelProfile(str(m))


def default_model_dir() -> Path:
    """``llmroute/_models`` (wheel layout) if it holds the model, else ``<repo>/models``."""
    here = Path(__file__).resolve().parent
    wheel = here / "_models"
    if (wheel / "predictor.onnx").exists():
        return wheel
    return here.parent / "models"


class Predictor(ShippedModel):
    """Features + ONNX model + per-model vectors. Thread-safe; the session is created lazily."""

    FILE_NAME = "predictor.onnx"
    LABEL = "predictor"
    ERROR = PredictorUnavailableError

    def __init__(self, onnx_path: str | Path, sidecar_path: str | Path | None = None) -> None:
        super().__init__(onnx_path, sidecar_path)
        self._encoder: Any = None
        self._vec_cache: dict[tuple[ModelProfile, ...], tuple[Any, tuple, tuple]] = {}
        self._extract: Any = None
        self._wants_tokens = False

    # ------------------------------------------------------------------ construction

    @classmethod
    def load(cls, path: str | Path) -> Predictor:
        """A predictor over ``path`` (a ``.onnx`` file or a folder holding ``predictor.onnx``).

        The files are read and checked now; the ONNX session is still created on first use.
        Raises :class:`PredictorUnavailableError` if they are missing or corrupt.
        """
        return cls._load(path)

    def _check_meta(self, meta: dict[str, Any]) -> None:
        from llmroute import _features

        feats = meta.get("features", {})
        if (
            feats.get("version") != _features.FEATURE_VERSION
            or feats.get("n_buckets") != _features.N_BUCKETS
            or list(feats.get("struct", ())) != list(_features.STRUCT_NAMES)
        ):
            raise PredictorUnavailableError(
                f"predictor {self.onnx_path} was trained for other features "
                f"(version {feats.get('version')}, this llmroute computes {_features.FEATURE_VERSION})"
            )

    def _opened(self, session: Any) -> None:
        from llmroute import _features

        self._wants_tokens = any(i.name == "tokens" for i in session.get_inputs())
        self._encoder = _features._encoder()
        self._extract = _features.extract

    # ------------------------------------------------------------------ model vectors

    @property
    def metadata(self) -> Mapping[str, Any]:
        """The sidecar (feature spec, pool vectors, tiers, metrics, training hashes)."""
        return MappingProxyType(self._ensure_meta())

    @property
    def pool(self) -> tuple[str, ...]:
        """Names of the models the network was trained with."""
        return tuple(sorted(self._ensure_meta()["models"]))

    def resolve(self, profile: ModelProfile) -> tuple[tuple[float, ...], bool, str]:
        """``(vector, known, source)`` of one model profile (see :class:`ModelProfile`)."""
        meta = self._ensure_meta()
        pool: Mapping[str, Sequence[float]] = meta["models"]
        tiers: Mapping[str, Sequence[float]] = meta["tiers"]
        width = int(meta["latent_dim"]) + 1
        if profile.vector is not None:
            if len(profile.vector) != width:
                raise ValueError(
                    f"model {profile.name!r}: vector has {len(profile.vector)} values, the predictor needs {width}"
                )
            return tuple(float(x) for x in profile.vector), True, "vector"
        if profile.name in pool:
            return tuple(pool[profile.name]), True, "pool"
        if profile.like and profile.like in pool:
            return tuple(pool[profile.like]), True, f"like:{profile.like}"
        if profile.tier and profile.tier in tiers and profile.tier != "neutral":
            return tuple(tiers[profile.tier]), True, f"tier:{profile.tier}"
        if profile.price_ratio is not None:
            return tuple(tiers["neutral"]), False, f"price:{profile.price_ratio:.3g}"
        return tuple(tiers["neutral"]), False, "neutral"

    def family_like(self, model_id: str) -> str | None:
        """The training-pool model whose family and size *model_id* (a provider's model id, any
        case, with or without ``org/`` or ``provider/`` prefixes) names, or None.

        Deliberately narrow (:data:`FAMILIES`): a newer generation of a family (``gpt-4o``,
        ``claude-3-5-sonnet``, ``llama-3.1``) is not the pool model and gets no match.
        """
        import re

        pool = self._ensure_meta()["models"]
        low = model_id.lower()
        for pattern, like in FAMILIES:
            if like in pool and re.search(pattern, low):
                return like
        return None

    def _vectors(self, models: Sequence[ModelProfile]) -> tuple[Any, tuple, tuple]:
        key = tuple(models)
        hit = self._vec_cache.get(key)
        if hit is not None:
            return hit
        import numpy as np

        resolved = [self.resolve(m) for m in models]
        width = int(self._ensure_meta()["latent_dim"]) + 1
        mat = np.array([r[0] for r in resolved] or [[0.0] * width], dtype=np.float32)
        out = (mat, tuple(r[1] for r in resolved), tuple(r[2] for r in resolved))
        if len(self._vec_cache) > 256:
            self._vec_cache.clear()
        self._vec_cache[key] = out
        return out

    # ------------------------------------------------------------------ prediction

    def predict(
        self,
        messages: Sequence[Mapping[str, Any]] | str,
        models: Sequence[ModelProfile | str] = (),
        *,
        tools: Any = None,
    ) -> Prediction:
        """Difficulty and per-model quality for one chat request.

        ``messages`` are OpenAI-style dicts (string, list-of-parts or ``None`` content; tool
        calls), or a single prompt string; ``models`` are :class:`ModelProfile` (or bare
        names); ``tools`` is the request's tool list (any truthy value marks tools present).
        Raises :class:`PredictorUnavailableError` if the model cannot be loaded.
        """
        sess = self._session or self._ensure_session()
        profiles = [m if type(m) is ModelProfile else _as_profile(m) for m in models]
        feats = self._extract(messages, tools, encoder=self._encoder)
        mat, known, source = self._vectors(profiles)
        inputs = {"buckets": feats.buckets, "struct": feats.struct, "model_vectors": mat}
        if self._wants_tokens:
            inputs["tokens"] = feats.tokens
        quality, latent, difficulty = sess.run(_OUTPUTS, inputs)
        names = [p.name for p in profiles]
        d = float(difficulty[0])
        q = quality.tolist()
        if not all(known):
            # no vector for this model: its quality is the transferable part, 1 - difficulty,
            # with the failure rate scaled by its relative price when the router gave one
            q = [qi if k else _unknown_quality(d, p.price_ratio) for qi, k, p in zip(q, known, profiles)]
        return Prediction(
            difficulty=d,
            quality=dict(zip(names, q)),
            known=dict(zip(names, known)),
            source=dict(zip(names, source)),
            latent=tuple(latent.tolist()),
            n_tokens=feats.n_tokens,
            model_id=self._model_id,
            features=feats,
        )

    def try_predict(
        self,
        messages: Sequence[Mapping[str, Any]] | str,
        models: Sequence[ModelProfile | str] = (),
        *,
        tools: Any = None,
    ) -> Prediction | None:
        """Like :meth:`predict`, but ``None`` (logged once) when the model is unavailable.

        What a router calls: with ``None`` the predictive strategy keeps the configured order,
        so a missing or corrupt model file never fails a call.
        """
        try:
            return self.predict(messages, models, tools=tools)
        except PredictorUnavailableError as exc:
            if not self._warned:
                self._warned = True
                _log.warning("predictor unavailable, routes keep their configured order: %s", exc)
            return None
