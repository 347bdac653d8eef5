"""Learning from your own traffic: calibration, feedback labels and refitted model vectors.

A :class:`~llmroute.router.Router` owns one :class:`Learning`; the router's ``calibrate``,
``record_feedback``, ``feedback_counts`` and ``refit_models`` are thin delegates to it.

* :meth:`Learning.calibrate` - set a predictive route's ``quality_target`` from a sample of
  unlabelled prompts so that a chosen share of calls goes past the route's cheapest model.
* :meth:`Learning.record_feedback` - keep a 0..1 label for the model that answered a reply.
* :meth:`Learning.refit_models` - refit the labelled models' predictor vectors in a worker thread.

Nothing here sends a request or blocks the event loop: labels are appended in O(1), fits run in a
worker thread. ``import llmroute.learning`` imports neither numpy nor the predictor.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .errors import InvalidRequestError

if TYPE_CHECKING:  # pragma: no cover
    from .calibration import ModelRefit
    from .router import Router
    from .types import Message, Reply

__all__ = ["Learning"]


class Learning:
    """What a router learns from its own traffic (see the module docstring).

    Built by the router it serves; reads and updates that router's config, model profiles and
    predictor.
    """

    #: Feedback labels kept per model by :meth:`record_feedback` (the oldest are dropped).
    feedback_limit: int = 10_000

    def __init__(self, router: Router) -> None:
        self._router = router
        #: Feedback labels per model: ``(prompt latent, score)`` (see :meth:`record_feedback`).
        self._feedback: dict[str, deque[tuple[tuple[float, ...], float]]] = {}

    # ------------------------------------------------------------------ calibration
    def calibrate(
        self,
        prompts: Sequence[Sequence[Message] | str],
        *,
        route: str,
        strong_share: float,
    ) -> float:
        """Set a predictive route's ``quality_target`` so that about *strong_share* of *prompts*
        go past the route's cheapest model; returns the target (see :meth:`Router.calibrate`)."""
        from .calibration import quality_target_for_strong_share
        from .router import _as_messages

        router = self._router
        name, rcfg = router._route(route, None)
        if rcfg.strategy != "predictive":
            raise InvalidRequestError(f"route {name!r} has strategy {rcfg.strategy!r}; calibrate needs 'predictive'")
        if not 0.0 <= strong_share <= 1.0:
            raise InvalidRequestError(f"strong_share must be within [0, 1], got {strong_share}")
        if not prompts:
            raise InvalidRequestError("calibrate needs at least one prompt")

        def unit_price(model: str) -> float:
            return min(d.price.input + d.price.output for d in router._deployments[model])

        weak = min(rcfg.models, key=unit_price)
        profiles = [router._profile(m) for m in rcfg.models]
        predictor = router._get_predictor()
        predictions = [predictor.predict(_as_messages(p), profiles) for p in prompts]
        target = min(1.0, max(0.0, quality_target_for_strong_share(predictions, weak, strong_share)))
        routes = dict(router.config.routes)
        routes[name] = rcfg.model_copy(update={"quality_target": target, "cost_weight": None})
        router.config = router.config.model_copy(update={"routes": routes})
        return target

    # ------------------------------------------------------------------ feedback
    def record_feedback(self, reply: Reply, score: float) -> None:
        """Keep *score* (0..1) as a label for the model that answered *reply* (see
        :meth:`Router.record_feedback`)."""
        decision = reply.route.prediction
        latent = tuple(getattr(decision, "latent", ()) or ())
        if not latent:
            raise InvalidRequestError(
                f"reply of route {reply.route.route!r} ({reply.route.strategy}) carries no prediction: "
                "only replies of predictive routes with a working predictor can be used as feedback"
            )
        value = _score(score)
        if reply.model not in self._router.config.models:
            raise InvalidRequestError(f"reply's model {reply.model!r} is not in this router's config")
        store = self._feedback.get(reply.model)
        if store is None:
            store = self._feedback[reply.model] = deque(maxlen=self.feedback_limit)
        store.append((latent, value))

    def feedback_counts(self) -> dict[str, int]:
        """Feedback labels held per model (see :meth:`record_feedback`)."""
        return {m: len(d) for m, d in self._feedback.items()}

    async def refit_models(self, *, min_labels: int = 30, l2: float = 1.0) -> dict[str, ModelRefit]:
        """Refit the predictor vector of every model with at least *min_labels* labels, in a
        worker thread (see :meth:`Router.refit_models`)."""
        import anyio.to_thread

        from .calibration import ModelRefit, fit_model_vector
        from .predictor import ModelProfile

        if min_labels < 1:
            raise InvalidRequestError(f"min_labels must be at least 1, got {min_labels}")
        if l2 <= 0:
            raise InvalidRequestError(f"l2 must be positive, got {l2}")
        router = self._router
        predictor = router._get_predictor()
        out: dict[str, ModelRefit] = {}
        for model, store in sorted(self._feedback.items()):
            if len(store) < min_labels:
                continue
            latents = [z for z, _ in store]
            scores = [y for _, y in store]
            old = router._profile(model)
            prior, _known, source = predictor.resolve(old)
            vector = await anyio.to_thread.run_sync(
                lambda latents=latents, scores=scores, prior=prior: fit_model_vector(
                    latents, scores, prior=prior, l2=l2
                )
            )
            router._profiles[model] = ModelProfile(model, like=old.like, tier=old.tier, vector=tuple(vector))
            models = dict(router.config.models)
            entry = dict(models[model].predictor or {})
            entry["vector"] = list(vector)
            models[model] = models[model].model_copy(update={"predictor": entry})
            router.config = router.config.model_copy(update={"models": models})
            out[model] = ModelRefit(model, len(scores), sum(scores) / len(scores), source, tuple(prior), tuple(vector))
        return out


def _score(score: Any) -> float:
    """A feedback score as a float in [0, 1], or ``InvalidRequestError``."""
    try:
        value = float(score)
    except (TypeError, ValueError):
        raise InvalidRequestError(f"feedback score must be a number in [0, 1], got {score!r}") from None
    if not 0.0 <= value <= 1.0:  # also refuses NaN
        raise InvalidRequestError(f"feedback score must be within [0, 1], got {score!r}")
    return value
