"""Hooks: how measurement (health tracking, metrics, tracing) sees every call and attempt.

Pass objects with any of these methods to ``Router(hooks=[...])``. They are called inline,
synchronously, on the event loop, so they must be quick and must not block; an exception a hook
raises is logged and swallowed, never breaking the call. For one routed call the order is
``call_started``, then ``attempt_started`` / ``attempt_finished`` per attempt, then
``call_finished``; ``trace.call_id`` and ``attempt.call_id`` tie them together (calls run
concurrently, so hooks see them interleaved). A call whose planning fails (e.g. its deadline
passes during warm-up) reports only ``call_finished``.

A cascade route is one call whose tiers are calls of their own, inside it: ``call_started`` for
the cascade, then each tier's ``call_started`` ... ``call_finished`` (its trace's
``parent_call_id`` is the cascade's ``call_id``), then the cascade's ``call_finished`` with the
whole trace (``trace.cascade``). Count calls by ``parent_call_id == 0`` to count each once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from .types import Attempt, ChatRequest, Reply, RouteTrace

__all__ = [
    "Hooks",
    "dispatch_attempt_finished",
    "dispatch_attempt_started",
    "dispatch_call_finished",
    "dispatch_call_started",
]

logger = logging.getLogger("llmroute.hooks")


class Hooks:
    """Base class with no-op methods; override the ones you need."""

    def call_started(self, trace: RouteTrace, request: ChatRequest, stream: bool) -> None:
        """A routed call (or stream) has its plan and is about to try its first candidate.

        ``trace.call_id`` identifies the call; ``trace.candidates``, ``strategy``, ``prediction``
        and ``reason`` hold the decision, and ``trace.duration_s`` the time spent so far
        (warm-up, planning). *request* is what was asked; *stream* whether the call streams.
        """

    def attempt_started(self, attempt: Attempt) -> None:
        """An attempt is about to send its request (count it as in flight)."""

    def attempt_finished(self, attempt: Attempt, error: BaseException | None) -> None:
        """An attempt ended: ``attempt.outcome`` is ``ok``, ``error`` or ``cancelled``.

        ``attempt.ttft_s`` is set for streams, ``attempt.duration_s`` always; ``error`` is the
        exception for failed attempts.
        """

    def call_finished(self, trace: RouteTrace, reply: Reply | None, error: BaseException | None) -> None:
        """A routed call (or stream) ended, with its reply or its error (``GeneratorExit`` for a
        stream closed early)."""


def dispatch_call_started(hooks: Sequence[Hooks], trace: RouteTrace, request: ChatRequest, stream: bool) -> None:
    """Call ``call_started`` on every hook that has it (older duck-typed hooks may not), logging (not
    raising) what they raise."""
    for hook in hooks:
        started = getattr(hook, "call_started", None)
        if started is None:
            continue
        try:
            started(trace, request, stream)
        except Exception:
            logger.exception("hook %r failed in call_started", hook)


def dispatch_attempt_started(hooks: Sequence[Hooks], attempt: Attempt) -> None:
    """Call ``attempt_started`` on every hook, logging (not raising) what they raise."""
    for hook in hooks:
        try:
            hook.attempt_started(attempt)
        except Exception:  # a broken hook must not break the call
            logger.exception("hook %r failed in attempt_started", hook)


def dispatch_attempt_finished(hooks: Sequence[Hooks], attempt: Attempt, error: BaseException | None) -> None:
    """Call ``attempt_finished`` on every hook, logging (not raising) what they raise."""
    for hook in hooks:
        try:
            hook.attempt_finished(attempt, error)
        except Exception:
            logger.exception("hook %r failed in attempt_finished", hook)


def dispatch_call_finished(
    hooks: Sequence[Hooks], trace: RouteTrace, reply: Reply | None, error: BaseException | None
) -> None:
    """Call ``call_finished`` on every hook, logging (not raising) what they raise."""
    for hook in hooks:
        try:
            hook.call_finished(trace, reply, error)
        except Exception:
            logger.exception("hook %r failed in call_finished", hook)
