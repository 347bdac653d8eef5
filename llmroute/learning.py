"""Learning from your own traffic: an online per-model head over the predictor's features,
exploration, calibration, feedback labels and refitted model vectors.

A :class:`~llmroute.router.Router` owns one :class:`Learning`; the router's ``calibrate``,
``record_feedback``, ``feedback_counts`` and ``refit_models`` are thin delegates to it.

* :class:`OnlineLearner` - for each model, a Bayesian linear head that predicts how far this
  user's scores fall from the shipped prior's predicted quality, from the features the predictor
  already computed for the prompt (:func:`encode`: bias, difficulty, latent, the 24 structural
  features and the hashed token n-gram buckets; no second tokenisation). The posterior is a
  Gaussian with a diagonal covariance, updated per label in closed form (assumed-density
  filtering of a linear-Gaussian model, O(number of active features)); the prior dominates while
  a model has few labels, the learned part takes over as they accumulate. Its state is a small
  versioned blob (:meth:`OnlineLearner.to_bytes`) whose natural parameters add across workers
  (:meth:`OnlineLearner.merge`).
* :meth:`Learning.decide` - a predictive route's decision over the learned quality, with
  Thompson-sampling exploration capped by a share of extra cost (``explored`` in the trace).
* :meth:`Learning.calibrate` - set a predictive route's ``quality_target`` from a sample of
  unlabelled prompts so that a chosen share of calls goes past the route's cheapest model.
* :meth:`Learning.record_feedback` - a 0..1 label for the model that answered a reply: it updates
  the online head at once and is kept for :meth:`Learning.refit_models`.
* :meth:`Learning.refit_models` - refit the labelled models' predictor vectors in a worker thread.

Nothing here sends a request or blocks the event loop: an update costs microseconds, fits run in a
worker thread. ``import llmroute.learning`` imports neither numpy nor the predictor.
"""

from __future__ import annotations

import contextvars
import dataclasses
import hashlib
import json
import logging
import math
import os
import zlib
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .errors import InvalidRequestError, LLMRouteError

if TYPE_CHECKING:  # pragma: no cover
    from .calibration import ModelRefit
    from .config import LearningConfig
    from .router import Router
    from .types import Message, Reply

__all__ = [
    "MAX_CHECKED_CHARS",
    "FileStore",
    "LearnedStateError",
    "LearnerSettings",
    "Learning",
    "OnlineLearner",
    "SharedStoreState",
    "StateStore",
    "parse_grade",
    "prior_profiles",
    "structured_output_failed",
]

_log = logging.getLogger("llmroute.learning")


class Learning:
    """What a router learns from its own traffic (see the module docstring).

    Built by the router it serves; reads and updates that router's config, model profiles and
    predictor. ``Learning(None, config=LearningConfig(...))`` is a learner without a router
    (:meth:`decide` and :meth:`learn` only), as ``python -m llmroute.eval --learn`` uses it.
    """

    #: Feedback labels kept per model by :meth:`record_feedback` (the oldest are dropped).
    feedback_limit: int = 10_000

    def __init__(
        self,
        router: Router | None,
        settings: LearnerSettings | None = None,
        *,
        config: LearningConfig | None = None,
    ) -> None:
        if router is None and config is None:
            from .config import LearningConfig

            config = LearningConfig()
        self._router: Any = router
        cfg = config if config is not None else router.config.learning  # type: ignore[union-attr]
        #: The ``learning`` section of the config (seed, exploration share, label sources...).
        self.config = cfg
        #: Feedback labels per model: ``(prompt latent, score)`` (see :meth:`record_feedback`).
        self._feedback: dict[str, deque[tuple[tuple[float, ...], float]]] = {}
        self._settings = settings or LearnerSettings()
        self._learner: OnlineLearner | None = None
        self._base: OnlineLearner | None = None  # the state at the last load or sync (see :meth:`sync`)
        self._pending_state = _read_state_file(cfg.state_file)
        self._rng: Any = None
        self._route_profiles: dict[tuple[str, ...], list[Any]] = {}
        #: Estimated cost of the learned decisions' best guesses, and what exploring added to it.
        self.routed_cost_usd = 0.0
        self.explore_cost_usd = 0.0
        self.explored_calls = 0
        #: 0 labels learned from replies that broke their structured-output contract.
        self.auto_labels = 0
        #: What the sampled judge did: graded, dropped (queue full), over_budget, unparsed, failed.
        self.judge_stats = {"graded": 0, "dropped": 0, "over_budget": 0, "unparsed": 0, "failed": 0}
        #: What the judge's calls cost so far (USD); it stops at ``judge.max_cost_usd``.
        self.judge_spent_usd = 0.0
        self._judge_reserved = 0.0
        self._judge_queue: deque[_JudgeItem] = deque()
        self._judge_wakeup: Any = None
        self._limiter: Any = None

    # ------------------------------------------------------------------ the online head
    @property
    def learner(self) -> OnlineLearner:
        """The online per-model heads (created on first use, from ``state_file`` when it holds a
        usable state: a corrupt one, or one of other settings, is reported and ignored)."""
        if self._learner is None:
            self._learner = self._from_blob(self._pending_state) or OnlineLearner(self._settings)
            self._pending_state = None
            self._base = self._learner.copy()
        return self._learner

    @learner.setter
    def learner(self, value: OnlineLearner) -> None:
        self._learner = value

    def _from_blob(self, data: bytes | None) -> OnlineLearner | None:
        if not data:
            return None
        try:
            return OnlineLearner.from_bytes(data, settings=self._settings)
        except LearnedStateError as exc:
            _log.warning("ignoring the learned state (%s): routing starts again from the shipped prior", exc)
            return None

    async def save(self, store: StateStore | str | os.PathLike[str] | None = None) -> None:
        """Write the learned state to *store* (a :class:`StateStore` or a file path; default the
        config's ``learning.state_file``). The blob is taken at once; the write runs in a thread.
        What was saved is the base of the next :meth:`sync` (use one store for both)."""
        blob = self.learner.to_bytes()
        await self._store(store).save(blob)
        self._base = OnlineLearner.from_bytes(blob)

    async def load(self, store: StateStore | str | os.PathLike[str] | None = None) -> bool:
        """Replace the learned state by the one in *store* (default ``learning.state_file``).

        Returns False, with a warning, and keeps the current state when there is none or it is
        corrupt or of other settings; a state fitted against another predictor is dropped at the
        first prediction (warning again): routing then starts from the shipped prior.
        """
        loaded = self._from_blob(await self._store(store).load())
        if loaded is None:
            return False
        self._learner = loaded
        self._base = loaded.copy()
        return True

    async def sync(self, store: StateStore) -> None:
        """Merge what this worker learned since its last sync into the shared state in *store*, and
        continue from the merged state: a fleet of workers syncing now and then learns together.

        Uses the store's atomic :meth:`StateStore.update` (natural parameters and stacking sums
        add, see :meth:`OnlineLearner.merge`); a corrupt shared state is replaced, with a warning.
        """
        local = self.learner.to_bytes()
        base = (self._base or OnlineLearner(self._settings)).to_bytes()
        settings = self._settings

        def merge(shared: bytes | None) -> bytes:
            mine = OnlineLearner.from_bytes(local)
            try:
                out = OnlineLearner.from_bytes(shared, settings=settings) if shared else None
            except LearnedStateError as exc:
                _log.warning("the shared learned state is unusable (%s): replacing it", exc)
                out = None
            if out is None:
                return local
            out.merge(mine, base=OnlineLearner.from_bytes(base))
            return out.to_bytes()

        merged = OnlineLearner.from_bytes(await store.update(merge))
        self._learner = merged
        self._base = merged.copy()

    def _store(self, store: StateStore | str | os.PathLike[str] | None) -> StateStore:
        if store is None:
            if not self.config.state_file:
                raise InvalidRequestError("no store given and the config sets no learning.state_file")
            return FileStore(self.config.state_file)
        if isinstance(store, (str, os.PathLike)):
            return FileStore(store)
        return store

    def _random(self) -> Any:
        if self._rng is None:
            self._rng = _np().random.default_rng(self.config.seed)
        return self._rng

    def decide(
        self,
        prediction: Any,
        candidates: Sequence[Any],
        *,
        quality_target: float | None = None,
        cost_weight: float | None = None,
    ) -> Any:
        """A predictive route's decision over the learned quality (prior + online head).

        Without labels for any candidate and without exploration this is exactly
        :func:`llmroute.policy.predictive.choose` on the prior. With ``explore_share`` > 0 the
        decision is also taken on a Thompson sample of each model's learned quality; when the
        sample picks another model, that model is used (``explored=True`` in the trace) if its
        extra estimated cost keeps exploration within ``explore_share`` of the routed cost.
        """
        from .policy.predictive import choose

        cfg = self.config
        explore = cfg.explore_share > 0.0
        names = [c.model for c in candidates]
        if prediction is None or not cfg.enabled:
            return choose(prediction, candidates, quality_target=quality_target, cost_weight=cost_weight)
        learner = self.learner
        if not explore and not learner.has_labels(names):
            return choose(prediction, candidates, quality_target=quality_target, cost_weight=cost_weight)
        x = self._encode(prediction)  # may drop a state fitted against another predictor
        if x is None or not (explore or self.learner.has_labels(names)):
            return choose(prediction, candidates, quality_target=quality_target, cost_weight=cost_weight)
        learner = self.learner
        prior = prediction.quality
        have = [m for m in names if m in prior]
        mean, var = learner.predict(have, x)
        adjusted = {m: _clip01(prior[m] + mu) for m, mu in zip(have, mean)}
        greedy = choose(
            _Adjusted(prediction, adjusted), candidates, quality_target=quality_target, cost_weight=cost_weight
        )
        final, explored = greedy, False
        if explore and greedy.chosen is not None:
            rng = self._random()
            draws = rng.standard_normal(len(have)).tolist()
            sample = {m: _clip01(prior[m] + mu + math.sqrt(v) * z) for m, mu, v, z in zip(have, mean, var, draws)}
            alt = choose(
                _Adjusted(prediction, sample), candidates, quality_target=quality_target, cost_weight=cost_weight
            )
            cost = {c.model: float(c.est_cost_usd) for c in candidates}
            base = cost[greedy.chosen]
            if alt.chosen is not None and alt.chosen != greedy.chosen:
                extra = cost[alt.chosen] - base
                if extra <= 0.0 or self.explore_cost_usd + extra <= cfg.explore_share * (self.routed_cost_usd + base):
                    final, explored = alt, True
                    self.explore_cost_usd += max(0.0, extra)
                    self.explored_calls += 1
            self.routed_cost_usd += base
        reason = final.reason
        if explored:
            reason = f"exploring (Thompson sample; best guess {greedy.chosen}): {reason}"
        return dataclasses.replace(
            final,
            quality=adjusted,
            reason=reason,
            explored=explored,
            prior_quality={m: float(prior[m]) for m in have},
            source=prediction,
        )

    def _encode(self, prediction: Any) -> tuple[Any, Any] | None:
        """The online head's input for *prediction*; a learner fitted against another predictor is
        dropped (with a warning) the first time it meets this one."""
        learner = self.learner
        pid = str(getattr(prediction, "model_id", "") or "")
        if pid and learner.predictor_id != pid:
            if learner.predictor_id:
                _log.warning(
                    "learned state was fitted against predictor %s, not %s: starting again from the prior",
                    learner.predictor_id,
                    pid,
                )
                learner = self._learner = OnlineLearner(self._settings)
            learner.predictor_id = pid
        return learner.encode(prediction)

    def learn(self, model: str, prediction: Any, score: float) -> bool:
        """Fold one 0..1 *score* of *model* on the prompt of *prediction* into the online head.

        Returns False when nothing could be learned (learning off, no features, no prior quality
        for the model). What :meth:`record_feedback` and the automatic label sources call.
        """
        if not self.config.enabled or prediction is None:
            return False
        prior = getattr(prediction, "quality", {}).get(model)
        if prior is None or not math.isfinite(prior):
            return False
        x = self._encode(prediction)
        if x is None:
            return False
        self.learner.update(model, x, _score(score) - float(prior))
        return True

    def route_profiles(self, models: Sequence[str]) -> list[Any]:
        """Predictor profiles of a route's *models* (:func:`prior_profiles` over their configured
        profiles, unit prices and provider model ids), built once per list of models."""
        from .predictor import PredictorUnavailableError

        key = tuple(models)
        hit = self._route_profiles.get(key)
        if hit is None:
            router = self._router
            deps = {m: router._deployments[m] for m in key}
            prices = {m: min(d.price.input + d.price.output for d in deps[m]) for m in key}
            configured = {m: router._profile(m) for m in key}
            try:
                hit = prior_profiles(
                    key,
                    prices,
                    router._get_predictor(),
                    profiles=configured,
                    provider_ids={m: deps[m][0].target.model for m in key},
                )
            except PredictorUnavailableError:  # the prediction will say so; keep the configured profiles
                return [configured[m] for m in key]
            self._route_profiles[key] = hit
        return hit

    # ------------------------------------------------------------------ label sources
    def observe(self, request: Any, reply: Reply) -> None:
        """Labels from a reply itself, right after it arrived (what the router calls; never raises).

        A reply of a predictive route that breaks its request's structured-output contract
        (:func:`structured_output_failed`) becomes a 0 label for the model that answered
        (``structured_output_labels``); a ``judge.share`` of them is queued for the sampled judge.
        Both are skipped for the judge's own calls.
        """
        if _JUDGING.get():
            return
        decision = reply.route.prediction
        source = getattr(decision, "source", None)
        if source is None or not self.config.enabled:
            return
        try:
            if self.config.structured_output_labels:
                why = structured_output_failed(request, reply)
                if why is not None and self.learn(reply.model, source, 0.0):
                    self.auto_labels += 1
                    _log.debug("0 label for %s: %s", reply.model, why)
            judge = self.config.judge
            if judge is not None and judge.share > 0 and reply.text and self._random().random() < judge.share:
                if len(self._judge_queue) >= judge.max_pending:
                    self.judge_stats["dropped"] += 1
                else:
                    item = _JudgeItem(reply.model, source, _last_user_text(request.messages), reply.text)
                    self._judge_queue.append(item)
                    if self._judge_wakeup is not None:
                        self._judge_wakeup.set()
        except Exception as exc:  # a label source must never fail the call it observes
            _log.warning("could not learn from a reply: %s", exc)

    async def run_judge(self) -> None:
        """Grade queued replies with the configured judge until cancelled (the router runs this in
        its task group when used as ``async with router:``); at most ``judge.max_concurrency`` at once."""
        import anyio

        _JUDGING.set(True)
        async with anyio.create_task_group() as tg:
            while True:
                if not self._judge_queue:
                    self._judge_wakeup = anyio.Event()
                    await self._judge_wakeup.wait()
                    continue
                item = self._judge_queue.popleft()
                await self._judge_limiter().acquire()
                tg.start_soon(self._grade_released, item)

    async def judge_pending(self) -> int:
        """Grade every reply queued for the judge now, and return how many got a label (for routers
        not used as ``async with router:``, which runs the judge in the background)."""
        import anyio

        token = _JUDGING.set(True)
        try:
            before = self.judge_stats["graded"]
            async with anyio.create_task_group() as tg:
                while self._judge_queue:
                    item = self._judge_queue.popleft()
                    await self._judge_limiter().acquire()
                    tg.start_soon(self._grade_released, item)
            return self.judge_stats["graded"] - before
        finally:
            _JUDGING.reset(token)

    def _judge_limiter(self) -> Any:
        if self._limiter is None:
            import anyio

            assert self.config.judge is not None
            self._limiter = anyio.Semaphore(self.config.judge.max_concurrency)
        return self._limiter

    async def _grade_released(self, item: _JudgeItem) -> None:
        try:
            await self._grade(item)
        finally:
            self._judge_limiter().release()

    async def _grade(self, item: _JudgeItem) -> None:
        """One judge call (cost checked against the cap before, counted after); never raises."""
        judge = self.config.judge
        assert judge is not None
        router = self._router
        stats = self.judge_stats
        messages = [
            {"role": "system", "content": _JUDGE_SYSTEM},
            {
                "role": "user",
                "content": f"Request:\n{_clip_text(item.question)}\n\nAnswer:\n{_clip_text(item.answer)}\n\n"
                "Grade (0-10):",
            },
        ]
        kwargs = {"route": judge.route, "model": judge.model, "max_tokens": 4, "temperature": 0.0}
        try:
            plan = router.plan(messages, **kwargs)
            est = max((c.est_cost_usd for c in plan.trace.candidates), default=0.0)
            if self.judge_spent_usd + self._judge_reserved + est > judge.max_cost_usd:
                stats["over_budget"] += 1
                return
            self._judge_reserved += est
            try:
                reply = await router.complete(messages, **kwargs)
            finally:
                self._judge_reserved -= est
            self.judge_spent_usd += reply.total_cost_usd
            grade = parse_grade(reply.text)
            if grade is None:
                stats["unparsed"] += 1
            elif self.learn(item.model, item.source, grade):
                stats["graded"] += 1
        except Exception as exc:  # the caller's reply is long gone: log, count, go on
            stats["failed"] += 1
            _log.warning("judge call failed: %s", exc)

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
        from ._request import validate_request
        from .calibration import quality_target_for_strong_share
        from .router import _as_messages
        from .types import ChatRequest

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
        profiles = self.route_profiles(rcfg.models)
        predictor = router._get_predictor()
        requests = [ChatRequest(_as_messages(p)) for p in prompts]
        for request in requests:
            validate_request(request)
        predictions = [predictor.predict(r.messages, profiles) for r in requests]
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
        self.learn(reply.model, getattr(decision, "source", None), value)

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
            self._route_profiles.clear()
            if self._learner is not None:
                self._learner.reset(model)  # the new vector holds these labels: do not count them twice
            models = dict(router.config.models)
            entry = dict(models[model].predictor or {})
            entry["vector"] = list(vector)
            models[model] = models[model].model_copy(update={"predictor": entry})
            router.config = router.config.model_copy(update={"models": models})
            out[model] = ModelRefit(model, len(scores), sum(scores) / len(scores), source, tuple(prior), tuple(vector))
        return out


def prior_profiles(
    names: Sequence[str],
    prices: Mapping[str, float],
    predictor: Any,
    *,
    profiles: Mapping[str, Any] | None = None,
    provider_ids: Mapping[str, str] | None = None,
) -> list[Any]:
    """Predictor profiles of *names*, with a prior for the models the predictor does not know.

    A model with a configured ``vector``, ``like`` or ``tier``, or in the training pool, keeps its
    profile. Otherwise: ``like`` the pool model whose family and size its provider model id (or
    name) names (:meth:`Predictor.family_like`), else a price prior: its ``price_ratio``, the price
    relative to the geometric mean of *prices* (the models it is routed among), so that a dearer
    model is predicted to fail less often (:data:`llmroute.predictor.PRICE_EXPONENT`). Learning
    takes over from there.
    """
    from .predictor import ModelProfile

    pool = set(predictor.pool)
    positive = [max(float(prices[n]), 1e-12) for n in names if n in prices]
    geo = math.exp(sum(math.log(p) for p in positive) / len(positive)) if positive else 0.0
    out = []
    for n in names:
        prof = (profiles or {}).get(n) or ModelProfile(n)
        if prof.vector is not None or prof.like or prof.tier or n in pool:
            out.append(prof)
            continue
        like = predictor.family_like((provider_ids or {}).get(n, n)) or predictor.family_like(n)
        if like is not None:
            out.append(dataclasses.replace(prof, like=like))
        elif n in prices and geo > 0:
            out.append(dataclasses.replace(prof, price_ratio=max(float(prices[n]), 1e-12) / geo))
        else:
            out.append(prof)
    return out


def _read_state_file(path: str | None) -> bytes | None:
    """The bytes of a configured state file (read once at start-up; missing: None, with a note)."""
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        _log.info("no learned state at %s yet: starting from the shipped prior", path)
    except OSError as exc:
        _log.warning("cannot read the learned state at %s (%s): starting from the shipped prior", path, exc)
    return None


@dataclass(frozen=True, slots=True)
class _Adjusted:
    """A prediction seen through learned (or sampled) quality, for :func:`choose`."""

    base: Any
    quality: Mapping[str, float]

    @property
    def difficulty(self) -> float:
        return float(self.base.difficulty)

    @property
    def known(self) -> Mapping[str, bool]:
        return getattr(self.base, "known", {})

    @property
    def latent(self) -> tuple[float, ...]:
        return tuple(getattr(self.base, "latent", ()) or ())


def _clip01(x: float) -> float:
    return 0.0 if x < 0.0 else 1.0 if x > 1.0 else x


def _score(score: Any) -> float:
    """A feedback score as a float in [0, 1], or ``InvalidRequestError``."""
    try:
        value = float(score)
    except (TypeError, ValueError):
        raise InvalidRequestError(f"feedback score must be a number in [0, 1], got {score!r}") from None
    if not 0.0 <= value <= 1.0:  # also refuses NaN
        raise InvalidRequestError(f"feedback score must be within [0, 1], got {score!r}")
    return value


# ---------------------------------------------------------------------------- the online head


class LearnedStateError(LLMRouteError):
    """A learned state blob is corrupt, from another format version, or fitted against another
    predictor or other settings. Routers catch it, warn and keep the shipped prior."""


@dataclass(frozen=True, slots=True)
class LearnerSettings:
    """Hyperparameters of :class:`OnlineLearner` (every worker of a fleet must share them).

    The head predicts ``score - prior quality`` as ``w . x``; each weight starts as a Gaussian
    ``N(0, var)`` with the variance of its block, and labels carry Gaussian noise ``noise_var``.
    Smaller prior variances keep the shipped prior in charge for longer.
    """

    #: Hashed token n-gram buckets folded into this many inputs (a power of two, <= 4096).
    hashed_dims: int = 1024
    #: Prior variance of each model's bias (its mean offset from the prior).
    bias_var: float = 0.1
    #: Prior variance of the weights of the difficulty, latent and structural inputs.
    dense_var: float = 1.0 / 300.0
    #: Prior variance of the hashed-token weights (the inputs are scaled to unit norm).
    text_var: float = 0.03
    #: Label noise variance.
    noise_var: float = 1.0
    #: Pull of the stacking weights toward 1 (see :class:`OnlineLearner`), in squared-prediction units.
    stack_prior: float = 1.0
    #: A head shared by all models (what makes a prompt harder for everyone) under the per-model heads.
    shared_head: bool = True
    #: Most models the learner keeps a head for (memory bound: about 17 kB per model).
    max_models: int = 256

    def __post_init__(self) -> None:
        h = self.hashed_dims
        if h < 1 or h > 4096 or h & (h - 1):
            raise ValueError(f"hashed_dims must be a power of two in [1, 4096], got {h}")
        for name in ("bias_var", "dense_var", "text_var", "noise_var", "stack_prior"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive number, got {v!r}")
        if self.max_models < 1:
            raise ValueError(f"max_models must be at least 1, got {self.max_models}")

    def as_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict (stored with the learned state)."""
        return {
            "hashed_dims": self.hashed_dims,
            "bias_var": self.bias_var,
            "dense_var": self.dense_var,
            "text_var": self.text_var,
            "noise_var": self.noise_var,
            "stack_prior": self.stack_prior,
            "shared_head": self.shared_head,
            "max_models": self.max_models,
        }


#: Dense inputs before the hashed buckets: bias, difficulty, latent 1..3, then the structural features.
_N_LEAD = 5
#: Row name of the head shared by all models (not a possible config model name).
_SHARED = "\x00shared"
_MAGIC = b"LLMRLS\x00"
STATE_VERSION = 1


def _np() -> Any:
    import numpy

    return numpy


class OnlineLearner:
    """Per-model Bayesian linear heads over the predictor's features (see the module docstring).

    ``encode(prediction)`` turns a :class:`~llmroute.predictor.Prediction` into a sparse input;
    ``predict(models, x)`` gives each model's learned offset (mean, variance) to add to the prior's
    predicted quality; ``update(model, x, residual)`` folds in one label (``residual`` = observed
    score - the prior's predicted quality). Deterministic: no randomness here (exploration draws
    from its own seeded generator). Not thread-safe: use it from one thread (the event loop).

    Two levels: a head shared by every model learns what makes a prompt harder (or easier) than
    the prior said *for everyone*; each model's own head learns how that model departs from it,
    which is what decides between models. How much to trust a model's own head is learned, not
    fixed: before each update its dense part (bias, difficulty, latent, structure) and its text
    part each predict the label out of sample, and a ridge regression of the residual on those two
    predictions (prior weights 1, pull ``stack_prior``) gives the weights of the two parts. Where
    the text only fits noise (a single-topic task) its weight falls toward 0 and the prior's
    ranking stays; where it predicts (which subject a prompt is about) it keeps its weight. The
    regression's sums are sufficient statistics: they add across workers like the heads.
    """

    def __init__(self, settings: LearnerSettings | None = None, *, predictor_id: str = "") -> None:
        from ._features import STRUCT_NAMES

        np = _np()
        self.settings = settings or LearnerSettings()
        #: The predictor (``Prediction.model_id``) this state was fitted against ("" until the first input).
        self.predictor_id = predictor_id
        s = self.settings
        self._n_struct = len(STRUCT_NAMES)
        self._d0 = _N_LEAD + self._n_struct
        self.dims = self._d0 + s.hashed_dims
        prior = np.empty(self.dims)
        prior[0] = s.bias_var
        prior[1 : self._d0] = s.dense_var
        prior[self._d0 :] = s.text_var
        self._prior_var = prior
        self._lead_idx = np.arange(self._d0, dtype=np.int64)
        self._rows: dict[str, int] = {}
        self._labels: list[int] = [0]
        # row 0 is the prior, shared by every model without labels
        self._mu = np.zeros((4, self.dims))
        self._var = np.tile(prior, (4, 1))
        # stacking sums per row: dd, dt, tt, dr, tr (d, t: the dense and text parts' predictions)
        self._stack = np.zeros((4, 5))
        self._weights = np.ones((4, 2))

    # ---------------------------------------------------------------- inputs and predictions
    def encode(self, prediction: Any) -> tuple[Any, Any] | None:
        """The sparse input ``(indices, values)`` of a prediction, or None when it carries no
        features (then nothing can be learned from it)."""
        feats = getattr(prediction, "features", None)
        if feats is None:
            return None
        np = _np()
        struct = feats.struct
        if struct.shape != (self._n_struct,):
            return None
        seen = np.zeros(self.settings.hashed_dims, dtype=bool)  # distinct buckets (faster than np.unique)
        seen[feats.buckets & (self.settings.hashed_dims - 1)] = True
        h = np.flatnonzero(seen)
        d0 = self._d0
        idx = np.empty(d0 + h.size, dtype=np.int64)
        idx[:d0] = self._lead_idx
        idx[d0:] = h + d0
        val = np.empty(d0 + h.size)
        val[0] = 1.0
        val[1] = float(prediction.difficulty)
        lat = tuple(prediction.latent)[1:4]
        val[2:_N_LEAD] = (*lat, 0.0, 0.0, 0.0)[:3]
        val[_N_LEAD:d0] = struct
        val[d0:] = 1.0 / math.sqrt(h.size) if h.size else 0.0
        return idx, val

    def predict(self, models: Sequence[str], x: tuple[Any, Any]) -> tuple[list[float], list[float]]:
        """Learned offset of each model's quality for input *x*: ``(means, variances)``.

        Models without labels get mean 0 and the prior variance.
        """
        np = _np()
        idx, val = x
        d0 = self._d0
        get = self._rows.get
        n = len(models)
        rows = np.fromiter((get(m, 0) for m in (*models, _SHARED)), dtype=np.int64, count=n + 1)
        sel = (rows[:, None], idx)
        mu = self._mu[sel]
        sd = self._var[sel]
        vv = val * val
        w = self._weights[rows[:n]]
        mean = w[:, 0] * (mu[:n, :d0] @ val[:d0]) + w[:, 1] * (mu[:n, d0:] @ val[d0:])
        var = w[:, 0] ** 2 * (sd[:n, :d0] @ vv[:d0]) + w[:, 1] ** 2 * (sd[:n, d0:] @ vv[d0:])
        if rows[n]:  # the shared head, once it has labels
            mean += float(mu[n] @ val)
            var += float(sd[n] @ vv)
        return mean.tolist(), var.tolist()

    def stacking_weights(self) -> dict[str, tuple[float, float]]:
        """Each model's learned weights of its dense and text parts (1, 1 before any label)."""
        return {
            m: (float(self._weights[r, 0]), float(self._weights[r, 1]))
            for m, r in sorted(self._rows.items())
            if m != _SHARED
        }

    def _restack(self, row: int) -> None:
        lam = self.settings.stack_prior
        dd, dt, tt, dr, tr = self._stack[row].tolist()
        a, b, c = dd + lam, dt, tt + lam
        u, v = dr + lam, tr + lam
        det = a * c - b * b
        wd = (u * c - v * b) / det
        wt = (a * v - b * u) / det
        self._weights[row, 0] = min(1.5, max(0.0, wd))
        self._weights[row, 1] = min(1.5, max(0.0, wt))

    def has_labels(self, models: Sequence[str]) -> bool:
        """Whether anything was learned that applies to *models*."""
        rows = self._rows
        return _SHARED in rows or any(m in rows for m in models)

    def labels(self) -> dict[str, int]:
        """Labels folded into each model's head."""
        return {m: self._labels[r] for m, r in sorted(self._rows.items()) if m != _SHARED}

    # ---------------------------------------------------------------- learning
    def _row(self, model: str) -> int:
        row = self._rows.get(model)
        if row is not None:
            return row
        if len(self._rows) >= self.settings.max_models:
            raise LearnedStateError(f"the learner already holds {len(self._rows)} models (max_models)")
        np = _np()
        row = len(self._labels)
        if row >= self._mu.shape[0]:
            grow = self._mu.shape[0]
            self._mu = np.vstack((self._mu, np.zeros((grow, self.dims))))
            self._var = np.vstack((self._var, np.tile(self._prior_var, (grow, 1))))
            self._stack = np.vstack((self._stack, np.zeros((grow, 5))))
            self._weights = np.vstack((self._weights, np.ones((grow, 2))))
        self._rows[model] = row
        self._labels.append(0)
        return row

    def update(self, model: str, x: tuple[Any, Any], residual: float) -> None:
        """Fold one label into *model*'s head: *residual* = observed score - prior's predicted quality.

        Closed form, O(active inputs): the Gaussian posterior's projection onto a diagonal
        covariance after one linear-Gaussian observation.
        """
        r = float(residual)
        if not math.isfinite(r):
            raise ValueError(f"residual must be a finite number, got {residual!r}")
        if model == _SHARED:
            raise ValueError("that model name is reserved")
        idx, val = x
        if self.settings.shared_head:
            shared = self._row(_SHARED)
            common = float(self._mu[shared, idx] @ val)
            self._adf(shared, idx, val, r)
            self._labels[shared] += 1
            r -= common  # the model's own head learns how it departs from everyone
        row = self._row(model)
        d0 = self._d0
        m = self._mu[row, idx]
        pd = float(m[:d0] @ val[:d0])
        pt = float(m[d0:] @ val[d0:])
        self._stack[row] += (pd * pd, pd * pt, pt * pt, pd * r, pt * r)
        self._adf(row, idx, val, r)
        self._labels[row] += 1
        self._restack(row)

    def _adf(self, row: int, idx: Any, val: Any, target: float) -> None:
        """One linear-Gaussian observation of *target* folded into a row (diagonal posterior)."""
        mu = self._mu[row]
        var = self._var[row]
        m = mu[idx]
        v = var[idx]
        vx = v * val
        k = vx / (self.settings.noise_var + float(vx @ val))
        mu[idx] = m + k * (target - float(m @ val))
        var[idx] = v - k * vx

    def reset(self, model: str) -> None:
        """Forget *model*'s head (back to the prior)."""
        row = self._rows.get(model)
        if row is not None:
            self._mu[row] = 0.0
            self._var[row] = self._prior_var
            self._stack[row] = 0.0
            self._weights[row] = 1.0
            self._labels[row] = 0

    def merge(self, other: OnlineLearner, base: OnlineLearner | None = None) -> None:
        """Add what *other* learned since *base* (default: since the prior) to this learner.

        Gaussian evidence multiplies: in natural parameters (precision, precision x mean) the
        increments of independent workers add up, so a fleet learns together by merging each
        worker's increment into a shared state. Both must share settings and predictor.
        """
        np = _np()
        for o in (other, base):
            if o is None:
                continue
            other_predictor = o.predictor_id and self.predictor_id and o.predictor_id != self.predictor_id
            if o.settings != self.settings or other_predictor:
                raise LearnedStateError("cannot merge learned states with other settings or another predictor")
        if not self.predictor_id:
            self.predictor_id = other.predictor_id
        p0 = 1.0 / self._prior_var

        def natural(lrn: OnlineLearner | None, model: str) -> tuple[Any, Any, Any, int]:
            row = lrn._rows.get(model) if lrn is not None else None
            if lrn is None or row is None:
                return p0, np.zeros(self.dims), np.zeros(5), 0
            prec = 1.0 / lrn._var[row]
            return prec, prec * lrn._mu[row], lrn._stack[row], lrn._labels[row]

        for model in sorted(other._rows):
            ps, es, ss, ns = natural(self, model)
            po, eo, so, no = natural(other, model)
            pb, eb, sb, nb = natural(base, model)
            prec = np.maximum(ps + po - pb, p0)
            stack = ss + so - sb
            row = self._row(model)
            self._var[row] = 1.0 / prec
            self._mu[row] = (es + eo - eb) / prec
            self._stack[row] = stack
            self._labels[row] = max(0, ns + no - nb)
            self._restack(row)

    def copy(self) -> OnlineLearner:
        """An independent copy (e.g. the base of the next merge)."""
        return OnlineLearner.from_bytes(self.to_bytes())

    # ---------------------------------------------------------------- persistence
    def to_bytes(self) -> bytes:
        """The learned state as a versioned, checksummed blob (deterministic bytes)."""
        np = _np()
        models = sorted(self._rows)
        rows = [self._rows[m] for m in models]
        payload = zlib.compress(
            np.ascontiguousarray(self._mu[rows], dtype="<f8").tobytes()
            + np.ascontiguousarray(self._var[rows], dtype="<f8").tobytes()
            + np.ascontiguousarray(self._stack[rows], dtype="<f8").tobytes(),
            6,
        )
        from ._features import FEATURE_VERSION

        header = {
            "format": "llmroute-learned-state",
            "version": STATE_VERSION,
            "predictor": self.predictor_id,
            "feature_version": FEATURE_VERSION,
            "settings": self.settings.as_dict(),
            "dims": self.dims,
            "models": models,
            "labels": [self._labels[r] for r in rows],
            "payload_sha256": hashlib.sha256(payload).hexdigest(),
        }
        head = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
        return _MAGIC + bytes([STATE_VERSION]) + len(head).to_bytes(4, "big") + head + payload

    @classmethod
    def from_bytes(
        cls, data: bytes, *, predictor_id: str | None = None, settings: LearnerSettings | None = None
    ) -> OnlineLearner:
        """Read a blob of :meth:`to_bytes`. Raises :class:`LearnedStateError` when it is corrupt,
        of another version, or (when given) fitted against another predictor or other settings."""
        np = _np()
        from ._features import FEATURE_VERSION

        n = len(_MAGIC)
        if not isinstance(data, (bytes, bytearray, memoryview)) or bytes(data[:n]) != _MAGIC:
            raise LearnedStateError("not a learned-state blob (bad magic)")
        data = bytes(data)
        if len(data) < n + 5 or data[n] != STATE_VERSION:
            raise LearnedStateError(f"learned-state version {data[n] if len(data) > n else '?'} is not {STATE_VERSION}")
        size = int.from_bytes(data[n + 1 : n + 5], "big")
        try:
            header = json.loads(data[n + 5 : n + 5 + size])
            payload = data[n + 5 + size :]
            if hashlib.sha256(payload).hexdigest() != header["payload_sha256"]:
                raise LearnedStateError("learned state is corrupt (checksum mismatch)")
            stored = LearnerSettings(**header["settings"])
            models = [str(m) for m in header["models"]]
            labels = [int(x) for x in header["labels"]]
        except LearnedStateError:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            raise LearnedStateError(f"learned state is corrupt ({exc})") from None
        if header.get("feature_version") != FEATURE_VERSION:
            raise LearnedStateError(
                f"learned state was fitted on feature version {header.get('feature_version')}, "
                f"this llmroute computes {FEATURE_VERSION}"
            )
        if settings is not None and stored != settings:
            raise LearnedStateError(f"learned state has other settings ({stored}) than this router ({settings})")
        pid = str(header.get("predictor") or "")
        if predictor_id and pid and pid != predictor_id:
            raise LearnedStateError(f"learned state was fitted against predictor {pid}, this one is {predictor_id}")
        out = cls(stored, predictor_id=pid or (predictor_id or ""))
        if int(header.get("dims", -1)) != out.dims or len(labels) != len(models):
            raise LearnedStateError("learned state is corrupt (shape)")
        try:
            raw = np.frombuffer(zlib.decompress(payload), dtype="<f8")
        except zlib.error as exc:
            raise LearnedStateError(f"learned state is corrupt ({exc})") from None
        k, dims = len(models), out.dims
        if raw.size != k * (2 * dims + 5):
            raise LearnedStateError("learned state is corrupt (size)")
        mu = raw[: k * dims].reshape(k, dims)
        var = raw[k * dims : 2 * k * dims].reshape(k, dims)
        stack = raw[2 * k * dims :].reshape(k, 5)
        if not (np.isfinite(raw).all() and (var > 0).all()):
            raise LearnedStateError("learned state is corrupt (non-finite or non-positive values)")
        for i, m in enumerate(models):
            row = out._row(m)
            out._mu[row] = mu[i]
            out._var[row] = var[i]
            out._stack[row] = stack[i]
            out._labels[row] = labels[i]
            out._restack(row)
        return out


# ---------------------------------------------------------------------------- automatic labels

#: Replies longer than this are not parsed for the structured-output check (it must stay cheap).
MAX_CHECKED_CHARS = 1 << 20


def structured_output_failed(request: Any, reply: Any) -> str | None:
    """Why *reply* breaks its own request's structured-output contract, or None.

    Checks, cheaply: under a JSON ``response_format`` (``json_object`` / ``json_schema``) the text
    must parse as JSON (and, for a schema with top-level ``required`` keys, be an object holding
    them); every tool call's arguments must parse as a JSON object holding the ``required``
    parameters of the tool it names. Replies over :data:`MAX_CHECKED_CHARS` are not checked.
    A pass proves nothing about quality, so only failures become labels.
    """
    fmt = getattr(request, "response_format", None)
    kind = fmt.get("type") if isinstance(fmt, Mapping) else None
    text = getattr(reply, "text", None)
    if kind in ("json_object", "json_schema") and not getattr(reply, "tool_calls", ()) and text is not None:
        if len(text) > MAX_CHECKED_CHARS:
            return None
        try:
            value = json.loads(text)
        except ValueError:
            return f"response_format {kind}: the reply is not valid JSON"
        if kind == "json_schema":
            spec = fmt.get("json_schema")
            missing = _missing_required(spec.get("schema") if isinstance(spec, Mapping) else None, value)
            if missing:
                return f"response_format json_schema: {missing}"
    required = _tool_required(getattr(request, "tools", None))
    for call in getattr(reply, "tool_calls", ()) or ():
        args = call.arguments or "{}"
        if len(args) > MAX_CHECKED_CHARS:
            continue
        try:
            value = json.loads(args)
        except ValueError:
            return f"tool call {call.name}: arguments are not valid JSON"
        if not isinstance(value, dict):
            return f"tool call {call.name}: arguments are not a JSON object"
        missing = _missing_required({"required": required.get(call.name, [])}, value)
        if missing:
            return f"tool call {call.name}: {missing}"
    return None


def _missing_required(schema: Any, value: Any) -> str | None:
    req = schema.get("required") if isinstance(schema, Mapping) else None
    if not req:
        return None
    if not isinstance(value, dict):
        return "not a JSON object"
    gone = [str(k) for k in req if k not in value]
    return f"missing required {', '.join(gone)}" if gone else None


def _tool_required(tools: Any) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for tool in tools or ():
        if not isinstance(tool, Mapping):
            continue
        fn = tool.get("function") if isinstance(tool.get("function"), Mapping) else tool
        name = fn.get("name")
        params = fn.get("parameters") or fn.get("input_schema") or {}
        if isinstance(name, str) and isinstance(params, Mapping) and isinstance(params.get("required"), list):
            out[name] = params["required"]
    return out


#: Set in the judge's own calls, so that they are never judged or labelled themselves.
_JUDGING: contextvars.ContextVar[bool] = contextvars.ContextVar("llmroute_judging", default=False)

_JUDGE_SYSTEM = (
    "You grade an AI assistant's answer to a user's request. Reply with one integer from 0 (wrong, "
    "unhelpful or refused) to 10 (fully correct and helpful), and nothing else."
)


@dataclass(frozen=True, slots=True)
class _JudgeItem:
    model: str
    source: Any
    question: str
    answer: str


def _clip_text(text: str, limit: int = 6000) -> str:
    return text if len(text) <= limit else text[: limit // 2] + "\n[...]\n" + text[-limit // 2 :]


def _last_user_text(messages: Any) -> str:
    for m in reversed(list(messages or ())):
        if isinstance(m, Mapping) and m.get("role") == "user":
            c = m.get("content")
            if isinstance(c, str):
                return c
            if isinstance(c, (list, tuple)):
                return "\n".join(p.get("text", "") for p in c if isinstance(p, Mapping) and p.get("text"))
    return ""


def parse_grade(text: str | None) -> float | None:
    """The 0..1 grade in a judge's reply (its first integer 0-10, divided by 10), or None."""
    import re

    m = re.search(r"\b(10|[0-9])\b", text or "")
    return int(m.group(1)) / 10.0 if m else None


# ---------------------------------------------------------------------------- persistence


@runtime_checkable
class StateStore(Protocol):
    """Where a learned state blob lives between runs and workers (:class:`FileStore` here; a Redis
    store plugs in the same way). Blobs are :meth:`OnlineLearner.to_bytes` output."""

    async def load(self) -> bytes | None:
        """The stored blob, or None when there is none yet."""
        ...

    async def save(self, data: bytes) -> None:
        """Replace the stored blob."""
        ...

    async def update(self, fn: Callable[[bytes | None], bytes]) -> bytes:
        """Atomically replace the stored blob by ``fn(stored)`` (read-modify-write under the
        store's lock: how workers of a fleet merge what they learned); returns the new blob."""
        ...


class FileStore:
    """A :class:`StateStore` in one file: atomic replace on save, an ``fcntl`` lock (POSIX) around
    :meth:`update` so that processes on one machine can merge into the same file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"FileStore({str(self.path)!r})"

    async def load(self) -> bytes | None:
        """The file's bytes, or None when it does not exist."""
        import anyio.to_thread

        return await anyio.to_thread.run_sync(self._read)

    async def save(self, data: bytes) -> None:
        """Write *data* to a temporary file beside the target, then rename it over the target."""
        import anyio.to_thread

        await anyio.to_thread.run_sync(self._write, bytes(data))

    async def update(self, fn: Callable[[bytes | None], bytes]) -> bytes:
        """Read, transform and write the file under an exclusive lock on ``<path>.lock``."""
        import anyio.to_thread

        def locked() -> bytes:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path.with_name(self.path.name + ".lock"), "a+b") as lock:
                try:
                    import fcntl

                    fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
                except ImportError:  # pragma: no cover - not POSIX: no cross-process lock
                    pass
                out = fn(self._read())
                self._write(out)
                return out

        return await anyio.to_thread.run_sync(locked)

    def _read(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None

    def _write(self, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


class SharedStoreState:
    """A :class:`StateStore` over the router's shared :class:`llmroute.stores.Store` (in memory, or
    Redis for a fleet): the blob lives base64-encoded under ``learning/<key>``, and :meth:`update`
    holds a lock made of the store's atomic ``add`` (with a TTL, so a worker that dies while holding
    it does not block the others for longer than *lock_ttl_s*)."""

    namespace = "learning"

    def __init__(self, store: Any, key: str = "state", *, lock_ttl_s: float = 30.0, lock_wait_s: float = 10.0) -> None:
        self.store = store
        self.key = key
        self.lock_ttl_s = lock_ttl_s
        self.lock_wait_s = lock_wait_s

    def __repr__(self) -> str:
        return f"SharedStoreState({self.store!r}, key={self.key!r})"

    async def load(self) -> bytes | None:
        """The stored blob, or None."""
        import base64

        text = await self.store.get(self.namespace, self.key)
        return base64.b64decode(text) if text else None

    async def save(self, data: bytes) -> None:
        """Replace the stored blob."""
        import base64

        await self.store.put(self.namespace, self.key, base64.b64encode(data).decode("ascii"))

    async def update(self, fn: Callable[[bytes | None], bytes]) -> bytes:
        """``fn(stored)`` written back while holding the lock; *fn* runs in a worker thread."""
        import anyio
        import anyio.to_thread

        lock = self.key + ":lock"
        with anyio.fail_after(self.lock_wait_s):
            delay = 0.005
            while await self.store.add(self.namespace, lock, 1.0, ttl_s=self.lock_ttl_s) > 1.0:
                await self.store.add(self.namespace, lock, -1.0, ttl_s=self.lock_ttl_s)
                await anyio.sleep(delay)
                delay = min(delay * 2, 0.2)
        try:
            out = await anyio.to_thread.run_sync(fn, await self.load())
            await self.save(out)
            return out
        finally:
            with anyio.CancelScope(shield=True):
                await self.store.add(self.namespace, lock, -1.0, ttl_s=self.lock_ttl_s)
