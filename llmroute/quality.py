"""The answer-quality model: how likely is this answer right? (the cascade's confidence check)

A small ONNX model shipped in ``models/`` (``llmroute/_models/`` in a wheel),
``answer_quality.onnx`` with its sidecar ``answer_quality.json``: a linear score over the
features ``llmroute._answer`` computes from one answer and its question, calibrated to a
probability. It is what the ``confidence`` check uses when the provider returned no token
log-probabilities. Trained by ``python -m training.train_answer_quality`` (see
``models/ANSWER_QUALITY_CARD.md`` for data, metrics and limits).

The ONNX session is created on first use (one intra-op and one inter-op thread) and runs inline:
a score costs a few microseconds. ``import llmroute.quality`` imports neither onnxruntime nor numpy.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ._onnx import ShippedModel
from .errors import LLMRouteError

__all__ = ["AnswerQuality", "AnswerQualityUnavailableError"]

_log = logging.getLogger("llmroute.quality")
_OUTPUTS = ["quality"]


class AnswerQualityUnavailableError(LLMRouteError):
    """The answer-quality model's files are missing, unreadable or corrupt.

    The confidence check then reports itself as not applicable instead of failing a call.
    """


class AnswerQuality(ShippedModel):
    """The answer-quality model: features in, probability of a right answer out. Thread-safe."""

    FILE_NAME = "answer_quality.onnx"
    LABEL = "answer-quality"
    ERROR = AnswerQualityUnavailableError

    def __init__(self, onnx_path: str | Path, sidecar_path: str | Path | None = None) -> None:
        super().__init__(onnx_path, sidecar_path)
        self._np: Any = None

    @classmethod
    def load(cls, path: str | Path) -> AnswerQuality:
        """A model over ``path`` (an ``.onnx`` file or a folder holding ``answer_quality.onnx``), checked now."""
        return cls._load(path)

    def _check_meta(self, meta: dict[str, Any]) -> None:
        from . import _answer

        feats = meta.get("features") or {}
        if feats.get("version") != _answer.FEATURE_VERSION or list(feats.get("names") or ()) != list(
            _answer.FEATURE_NAMES
        ):
            raise AnswerQualityUnavailableError(
                f"answer-quality model {self.onnx_path} was trained for other features "
                f"(version {feats.get('version')}, this llmroute computes {_answer.FEATURE_VERSION})"
            )

    def _opened(self, session: Any) -> None:
        import numpy as np

        self._np = np

    @property
    def metadata(self) -> Mapping[str, Any]:
        """The sidecar: feature names, weights, calibration, training settings and metrics."""
        return MappingProxyType(self._ensure_meta())

    def score(self, features: Sequence[float]) -> float:
        """The probability that the answer with these features (``llmroute._answer.features``) is right.

        Raises :class:`AnswerQualityUnavailableError` if the model cannot be loaded.
        """
        sess = self._session or self._ensure_session()
        x = self._np.asarray(features, dtype=self._np.float32).reshape(1, -1)
        (quality,) = sess.run(_OUTPUTS, {"features": x})
        return float(quality[0, 0])

    def try_score(self, features: Sequence[float]) -> float | None:
        """Like :meth:`score`, but ``None`` (logged once) when the model is unavailable."""
        try:
            return self.score(features)
        except AnswerQualityUnavailableError as exc:
            if not self._warned:
                self._warned = True
                _log.warning("answer-quality model unavailable, the confidence check is skipped: %s", exc)
            return None
