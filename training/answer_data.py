"""Recorded answers with correctness labels, for the cascade's answer-quality model.

Reads ``../shared/data/responses/*.parquet`` and ``../shared/data/routing/routerbench_responses.parquet``
(with ``routerbench.parquet`` for the prompts and benchmarks) in place, never copies them, and
turns every answer into the feature vector of ``llmroute._answer.features``.

One row per (prompt, model): ``benchmark, model, prompt_id, score, features``. ``can_ai_code``'s
``prompt_sent`` is the prompt when present (the text that run actually sent).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from llmroute import _answer as A  # noqa: E402

__all__ = ["PAIRS", "Answers", "default_data_dir", "load_answers"]

RESPONSE_FILES = ("word_problems", "commonsenseqa", "math_level5", "cruxeval", "can_ai_code")

#: (benchmark, weak, strong) pairs a cascade is scored on: a cheap model and a stronger one of
#: the same family or price step, as a user would pair them.
PAIRS: tuple[tuple[str, str, str], ...] = (
    ("svamp", "code-davinci-002", "gpt-4o-mini-2024-07-18"),
    ("aqua", "code-davinci-002", "gpt-4"),
    ("commonsenseqa", "gpt-3.5-turbo", "gpt-4o-mini-2024-07-18"),
    ("commonsenseqa", "text-davinci-003", "gpt-4o-mini-2024-07-18"),
    *(
        (bench, weak, strong)
        for bench in ("math_level5", "cruxeval_o")
        for weak, strong in (
            ("gpt-4o-mini-2024-07-18", "o1-mini-2024-09-12"),
            ("claude-3-haiku-20240307", "claude-3-5-sonnet-20240620"),
            ("Meta-Llama-3.1-8B-Instruct", "Meta-Llama-3.1-70B-Instruct"),
            ("Qwen2.5-7B-Instruct", "Qwen2.5-72B-Instruct"),
            ("gemma-2-9b-it", "gemma-2-27b-it"),
            ("gemini-1.5-flash", "gemini-1.5-pro"),
            ("gpt-3.5-turbo-0125", "gpt-4o-2024-08-06"),
        )
    ),
    *(
        (bench, weak, "gpt-4-1106-preview")
        for bench in ("arc_challenge", "winogrande", "mbpp")
        for weak in ("mistralai/mistral-7b-chat", "gpt-3.5-turbo-1106", "meta/llama-2-70b-chat")
    ),
)


def default_data_dir() -> Path:
    """``<repo>/../shared/data``."""
    return REPO.parent / "shared" / "data"


@dataclass
class Answers:
    """Every recorded answer, as features and labels."""

    benchmark: np.ndarray  # str
    model: np.ndarray  # str
    prompt_id: np.ndarray  # str
    score: np.ndarray  # float in [0, 1]
    X: np.ndarray  # features, (n, len(FEATURE_NAMES))
    prompt: list[str]
    response: list[str]

    def subset(self, mask: np.ndarray) -> Answers:
        idx = np.flatnonzero(mask)
        return Answers(
            self.benchmark[idx],
            self.model[idx],
            self.prompt_id[idx],
            self.score[idx],
            self.X[idx],
            [self.prompt[i] for i in idx],
            [self.response[i] for i in idx],
        )


def _frames(data_dir: Path):
    import pandas as pd

    resp_dir = data_dir / "responses"
    routing = data_dir / "routing"
    if not resp_dir.is_dir() or not routing.is_dir():
        raise SystemExit(
            f"error: shared data not found under {data_dir} (need responses/ and routing/); "
            "pass --data PATH/TO/shared/data"
        )
    frames = []
    for name in RESPONSE_FILES:
        df = pd.read_parquet(resp_dir / f"{name}.parquet")
        if "prompt_sent" in df.columns:
            df["prompt"] = df["prompt_sent"].where(df["prompt_sent"].notna(), df["prompt"])
        frames.append(df[["prompt_id", "benchmark", "prompt", "model", "score", "response"]])
    rb = pd.read_parquet(routing / "routerbench_responses.parquet", columns=["prompt_id", "model", "response", "score"])
    meta = pd.read_parquet(routing / "routerbench.parquet", columns=["prompt_id", "model", "benchmark", "prompt"])
    frames.append(rb.merge(meta, on=["prompt_id", "model"], how="inner"))
    df = pd.concat(frames, ignore_index=True)
    df = df[df["score"].notna()].copy()
    df["response"] = df["response"].fillna("").astype(str)
    df["prompt"] = df["prompt"].fillna("").astype(str)
    return df


def load_answers(data_dir: Path | None = None, cache: Path | None = None) -> Answers:
    """All recorded answers with their features (cached in *cache*, an ``.npz``, when given)."""
    df = _frames(data_dir or default_data_dir())
    X = None
    if cache is not None and cache.exists():
        z = np.load(cache, allow_pickle=False)
        if z["X"].shape == (len(df), len(A.FEATURE_NAMES)) and int(z["version"]) == A.FEATURE_VERSION:
            X = z["X"]
    if X is None:
        questions: dict[str, A.Question] = {}
        rows = []
        for prompt, response in zip(df["prompt"].tolist(), df["response"].tolist()):
            q = questions.get(prompt)
            if q is None:
                q = questions[prompt] = A.question(prompt)
            rows.append(A.features(A.analyse(response, q)))
        X = np.asarray(rows, dtype=np.float64)
        if cache is not None:
            np.savez(cache, X=X, version=A.FEATURE_VERSION)
    return Answers(
        df["benchmark"].to_numpy(str),
        df["model"].to_numpy(str),
        df["prompt_id"].astype(str).to_numpy(str),
        df["score"].to_numpy(float),
        X,
        df["prompt"].tolist(),
        df["response"].tolist(),
    )
