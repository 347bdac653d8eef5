"""Train the llmroute predictor and write ``models/predictor.onnx`` + ``models/predictor.json``.

One command, from the repo root::

    python -m training.train_predictor [--data ../shared/data/routing] [--out models] [--eval]

``--eval`` also runs the held-out evaluation (``training/evaluate.py``: split by prompt and
leave-one-benchmark-out, predictor vs prompt length vs random) and writes
``models/MODEL_CARD.md`` with the tables.

Model (IRT-style, numpy + scipy L-BFGS, fixed seeds, deterministic):

* a difficulty head (:func:`fit_difficulty`) on the structural features plus a static
  token-embedding mean: ridge on failure rates standardised per source file (features centred
  per file, each benchmark weighing the same, length never counting as easier), calibrated to
  the failure rate. It is what the router uses for models it has never seen, and what the eval
  CLI routes by. The token part is a model2vec-style table built at training time only
  (:func:`token_table`): every o200k token of the training prompts is embedded by
  all-MiniLM-L6-v2 (``training/minilm.py``, numpy), reduced by PCA to ``token_dim`` dims and
  averaged with SIF weights; since the head is linear, the shipped model only keeps one number
  per token (``tok_uw``) and its weight (``tok_w``). Hashed text stays out of the head (it
  learned to recognise benchmarks and did not transfer in leave-one-benchmark-out);
* prompt latent ``z`` (``K`` dims): ``z[0] = -logit(difficulty)`` (the head's easiness, a fixed
  input) and ``z[1:] = (mean(T[buckets]) + W @ clip((s - mu) / sd) + c)[1:]``, from the hashed
  token n-gram buckets and the structural features of ``llmroute/_features.py``;
* per-model vector ``v_m = (theta_m, a_m)``: ``logit q_m = theta_m + a_m . z`` with
  ``a_m[0] >= 0`` (each model's slope on the easiness axis: quality never falls as the prompt
  gets easier, and follows the difficulty that transfers to unseen tasks; with
  ``easiness_axis=False``, ``z[0]`` is learned too and ``a_m[0] = 1``);
* training-only offsets ``beta[benchmark, model]`` absorb what is constant within a benchmark, so
  the network is pushed to explain *within-benchmark* differences (what routing needs on a task
  it never saw) instead of learning to recognise benchmarks; they are dropped at run time;
* each benchmark weighs the same in the loss (group balance), soft labels for fractional scores.

The data are read in place from ``../shared/data/routing`` and never copied;
``routerdc7_nc.parquet`` (non-commercial) is never read.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from llmroute import _features as F  # noqa: E402

__all__ = ["Dataset", "Params", "fit", "forward", "load_dataset", "main"]

SEED = 20240601
FILES = ("routerbench.parquet", "routerdc7.parquet")
EXCLUDED = ("routerdc7_nc.parquet",)
K = 4
DEFAULT_HP = {
    "l2_table": 1e-2,
    "l2_struct": 1e-4,
    "l2_model": 1e-4,
    "l2_beta": 1e-4,
    "maxiter": 200,
    "length_floor": True,
    "difficulty_features": None,  # None: latent 0 reads every feature
    "l2_difficulty": 0.3,
    "token_dim": 16,  # PCA dims of the MiniLM token table in the difficulty head (0: none)
    "l2_tokens": 0.3,  # ridge penalty of those dims
    "sif_a": 1e-3,  # SIF weight a / (a + p(token)) of the token mean
    # "pooled": failure rates standardised per source file, so harder *tasks* count too (what a
    # mixed-topic set such as MMLU needs); "within": standardised per benchmark (harder than its
    # neighbours only). See training/experiments/between_topics.py.
    "difficulty_mode": "pooled",
    # latent 0 is the difficulty head's easiness (minus its logit), each model with its own
    # slope a_0 >= 0, instead of a learned axis with a_0 = 1: predicted quality then follows the
    # difficulty that transfers to unseen tasks. See the module docstring.
    "easiness_axis": True,
}
#: Structural features whose effect on easiness (latent 0) is bounded to <= 0 when
#: ``length_floor`` is on: a longer prompt is never predicted to be easier (length as a floor).
FLOOR_FEATURES = ("log_chars", "log_tokens_est", "log_last_user_chars")

#: Hand-assigned size tiers of the pool models; a tier's prior vector is the mean of its members.
TIERS = {
    "small": [
        "mistralai/mistral-7b-chat",
        "WizardLM/WizardLM-13B-V1.2",
        "HuggingFaceH4/zephyr-7b-beta",
        "itpossible/Chinese-Mistral-7B-v0.1",
        "mistralai/Mistral-7B-v0.1",
        "meta-llama/Meta-Llama-3-8B",
        "cognitivecomputations/dolphin-2.6-mistral-7b",
        "cognitivecomputations/dolphin-2.9-llama3-8b",
        "meta-math/MetaMath-Mistral-7B",
    ],
    "medium": [
        "meta/llama-2-70b-chat",
        "meta/code-llama-instruct-34b-chat",
        "zero-one-ai/Yi-34B-Chat",
        "mistralai/mixtral-8x7b-chat",
        "claude-instant-v1",
        "gpt-3.5-turbo-1106",
    ],
    "large": ["claude-v1", "claude-v2", "gpt-3.5-turbo-1106", "zero-one-ai/Yi-34B-Chat"],
    "frontier": ["gpt-4-1106-preview"],
}


def default_data_dir() -> Path:
    """``<repo>/../shared/data/routing``."""
    return REPO.parent / "shared" / "data" / "routing"


def question_key(prompt: str) -> str:
    """Normalised question stem, so the same question in two files lands in the same split."""
    t = unicodedata.normalize("NFKC", prompt).lower()
    t = re.sub(r"^\s*(\"\"\"|question:)", "", t)
    t = re.sub(r"[^0-9a-z]+", "", t)
    return t[:80]


@dataclass
class Dataset:
    """Prompts (features, benchmark groups) and the observed (prompt, model, score) cells."""

    prompts: list[str]
    bench: list[str]  # benchmark name (shared across files)
    group: np.ndarray  # int index of (file, benchmark)
    group_names: list[str]
    keys: list[str]
    buckets: list[np.ndarray]
    struct: np.ndarray
    tokens: list[np.ndarray]  # window token ids per prompt (``[F.TOKEN_PAD]`` if none)
    vocab: np.ndarray  # sorted o200k ids occurring in the prompts
    vocab_vecs: np.ndarray  # (len(vocab), 384) MiniLM embedding of each of those tokens
    tok_rows: list[np.ndarray]  # per prompt: positions of its tokens in ``vocab``
    models: list[str]
    p_idx: np.ndarray
    m_idx: np.ndarray
    y: np.ndarray
    hashes: dict[str, str]


def load_dataset(data_dir: Path) -> Dataset:
    """Read the routing files in place and compute the features of every prompt."""
    import pandas as pd

    if not data_dir.is_dir():
        raise SystemExit(
            f"error: routing data not found at {data_dir}; pass --data (the training data is the "
            "shared/data/routing folder, read in place, never copied into the repo)"
        )
    frames = []
    hashes = {}
    for name in FILES:
        path = data_dir / name
        if not path.exists():
            raise SystemExit(f"error: {path} is missing")
        hashes[name] = hashlib.sha256(path.read_bytes()).hexdigest()
        df = pd.read_parquet(path, columns=["prompt_id", "benchmark", "prompt", "model", "score"])
        df["file"] = name.split(".")[0]
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    df = df.dropna(subset=["score"])
    df["pkey"] = df["file"] + "/" + df["prompt_id"].astype(str)
    df = df.sort_values(["pkey", "model"], kind="mergesort").reset_index(drop=True)
    first = df.drop_duplicates("pkey", keep="first")
    pkeys = first["pkey"].tolist()
    pindex = {k: i for i, k in enumerate(pkeys)}
    prompts = first["prompt"].tolist()
    bench = first["benchmark"].tolist()
    gnames_full = (first["file"] + "/" + first["benchmark"]).tolist()
    group_names = sorted(set(gnames_full))
    gidx = {g: i for i, g in enumerate(group_names)}
    models = sorted(df["model"].unique().tolist())
    midx = {m: i for i, m in enumerate(models)}
    enc = F._encoder()
    feats = [F.extract([{"role": "user", "content": p}], encoder=enc) for p in prompts]
    tokens = [f.tokens for f in feats]
    vocab = np.unique(np.concatenate([t[t < F.TOKEN_PAD] for t in tokens]))
    return Dataset(
        prompts=prompts,
        bench=bench,
        group=np.array([gidx[g] for g in gnames_full], dtype=np.int64),
        group_names=group_names,
        keys=[question_key(p) for p in prompts],
        buckets=[f.buckets for f in feats],
        struct=np.stack([f.struct for f in feats]).astype(np.float64),
        tokens=tokens,
        vocab=vocab,
        vocab_vecs=token_vectors(vocab, enc),
        tok_rows=[np.searchsorted(vocab, t[t < F.TOKEN_PAD]) for t in tokens],
        models=models,
        p_idx=np.array([pindex[k] for k in df["pkey"]], dtype=np.int64),
        m_idx=np.array([midx[m] for m in df["model"]], dtype=np.int64),
        y=df["score"].to_numpy(dtype=np.float64).clip(0.0, 1.0),
        hashes=hashes,
    )


def token_vectors(ids: np.ndarray, enc) -> np.ndarray:
    """all-MiniLM-L6-v2 embedding of each o200k token (its text as a one-token sentence).

    Unsupervised, per token; cached under ``~/.cache/llmroute-train`` (keyed by the encoder
    weights and the token ids), since it takes a couple of minutes in numpy.
    """
    from training.minilm import MiniLM, model_dir

    st = model_dir() / "model.safetensors"
    key = hashlib.sha256(hashlib.sha256(st.read_bytes()).digest() + ids.astype(np.int64).tobytes()).hexdigest()
    cache = Path.home() / ".cache" / "llmroute-train" / f"minilm_tokens_{key[:24]}.npy"
    if cache.exists():
        return np.load(cache)
    print(f"embedding {ids.size} tokens with all-MiniLM-L6-v2 (cached in {cache.parent})", file=sys.stderr)
    texts = [enc.decode_single_token_bytes(int(i)).decode("utf-8", "replace") for i in ids]
    vecs = MiniLM().encode(texts, max_len=16, batch=256)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, vecs)
    return vecs


def token_table(ds: Dataset, prompt_mask: np.ndarray, dim: int, a: float) -> tuple[np.ndarray, np.ndarray]:
    """The static token table of the training prompts: ``(vecs, weights)`` per ``ds.vocab`` entry.

    Token frequencies, the (frequency-weighted) PCA to *dim* dims and the SIF weights
    ``a / (a + p)`` come from the prompts of *prompt_mask* only; tokens that never occur there
    get a zero vector and weight 1, like any token outside the table at run time.
    """
    cnt = np.zeros(ds.vocab.size)
    for i in np.flatnonzero(prompt_mask):
        np.add.at(cnt, ds.tok_rows[i], 1.0)
    pf = cnt / max(cnt.sum(), 1.0)
    e = ds.vocab_vecs.astype(np.float64)
    mu = pf @ e
    cov = ((e - mu) * pf[:, None]).T @ (e - mu)
    _, vec = np.linalg.eigh(cov)
    vec = vec[:, ::-1][:, :dim]
    vec = vec * np.where(vec.sum(axis=0) < 0, -1.0, 1.0)  # deterministic sign
    table = np.where((cnt > 0)[:, None], (e - mu) @ vec, 0.0)
    return table, a / (a + pf)


def token_means(ds: Dataset, table: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """SIF-weighted mean of the token table rows of every prompt (zero without tokens)."""
    out = np.zeros((len(ds.prompts), table.shape[1]))
    for i, r in enumerate(ds.tok_rows):
        if r.size:
            w = weights[r]
            out[i] = (w @ table[r]) / w.sum()
    return out


def bucket_matrix(buckets: list[np.ndarray]):
    """Sparse (prompts x (N_BUCKETS + 1)) matrix of mean-pooling weights."""
    from scipy import sparse

    rows, cols, vals = [], [], []
    for i, b in enumerate(buckets):
        rows.append(np.full(b.size, i, dtype=np.int64))
        cols.append(b)
        vals.append(np.full(b.size, 1.0 / b.size))
    mat = sparse.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(len(buckets), F.N_BUCKETS + 1),
    )
    mat.sum_duplicates()
    return mat


@dataclass
class Params:
    """Fitted parameters (float64 while training; exported as float32)."""

    table: np.ndarray  # (N_BUCKETS + 1, K)
    w_struct: np.ndarray  # (S, K)
    bias: np.ndarray  # (K,)
    mu: np.ndarray  # (S,)
    sd: np.ndarray  # (S,)
    d_w: np.ndarray  # (S,) difficulty head on the standardised structural features
    d_b: float
    tok_ids: np.ndarray  # o200k ids with a learned entry in the difficulty head's token table
    tok_uw: np.ndarray  # per tok_ids: weight x contribution to the difficulty logit
    tok_w: np.ndarray  # per tok_ids: SIF weight (tokens outside tok_ids: contribution 0, weight 1)
    theta: np.ndarray  # (M,)
    a: np.ndarray  # (M, K), a[:, 0] == 1
    models: list[str]
    hp: dict


def dense_token_tables(p: Params) -> tuple[np.ndarray, np.ndarray]:
    """``(uw, w)`` indexed by o200k id, last row for ids past the vocabulary (``TOKEN_PAD``)."""
    n = int(F._encoder().n_vocab)
    uw = np.zeros(n + 1)
    w = np.ones(n + 1)
    w[n] = 0.0
    uw[p.tok_ids] = p.tok_uw
    w[p.tok_ids] = p.tok_w
    return uw, w


def difficulty_logit(p: Params, struct: np.ndarray, tokens: list[np.ndarray]) -> np.ndarray:
    """Logit of the predicted difficulty per prompt, the same arithmetic as the ONNX graph."""
    xs = np.clip((struct - p.mu) / p.sd, -5.0, 5.0)
    uw, w = dense_token_tables(p)
    last = uw.size - 1
    tok = np.array([uw[np.minimum(t, last)].sum() / max(w[np.minimum(t, last)].sum(), 1e-6) for t in tokens])
    return xs @ p.d_w + tok + p.d_b


def difficulty(p: Params, struct: np.ndarray, tokens: list[np.ndarray]) -> np.ndarray:
    """Predicted difficulty in (0, 1) per prompt, the same arithmetic as the ONNX graph."""
    return 1.0 / (1.0 + np.exp(-difficulty_logit(p, struct, tokens)))


def ridge_length_floor(a: np.ndarray, y: np.ndarray, w: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """Weighted ridge ``argmin sum w (y - a b)^2 + sum lam b^2`` whose first columns are the
    structural features, with the length features (:data:`FLOOR_FEATURES`) kept >= 0 by an
    active set: a negative length weight is fixed at 0 and the rest refitted."""
    free = np.ones(a.shape[1], dtype=bool)
    floor = [F.STRUCT_NAMES.index(n) for n in FLOOR_FEATURES]
    beta = np.zeros(a.shape[1])
    for _ in range(len(floor) + 1):
        af = a[:, free]
        beta[:] = 0.0
        beta[free] = np.linalg.solve(af.T @ (af * w[:, None]) + np.diag(lam[free]), af.T @ (w * y))
        neg = [j for j in floor if free[j] and beta[j] < 0]
        if not neg:
            break
        free[neg] = False
    return beta


def fit_difficulty(
    ds: Dataset, prompt_mask: np.ndarray, mu: np.ndarray, sd: np.ndarray, hp: dict
) -> tuple[np.ndarray, float, np.ndarray, np.ndarray, np.ndarray]:
    """The difficulty head: ridge on standardised failure rates, then a 1-D logistic
    calibration to the failure rate itself.

    Features: the standardised structural features plus the SIF-weighted mean of the static
    token table (:func:`token_table`, standardised, penalty ``l2_tokens``); each benchmark
    weighs the same. With ``difficulty_mode="pooled"`` (the default) targets are standardised
    and features centred per source *file*: the head learns both what makes a prompt harder
    than its neighbours and which kinds of task are harder (maths and code over everyday
    science), which is what a mixed-topic set needs. With ``"within"`` they are standardised
    per (file, benchmark): only the within-task part. The features are few and generic
    (no hashed text), so neither mode can learn to recognise a benchmark by its wording.
    The length features are constrained to count as harder (active set: a negative length
    weight is fixed at 0 and the rest refitted).

    Returns ``(d_w, d_b, tok_ids, tok_uw, tok_w)``: the linear token part is folded into one
    number per token (the mean of a linear map is the linear map of the mean).
    """
    P, M = len(ds.prompts), len(ds.models)
    mat = np.full((P, M), np.nan)
    mat[ds.p_idx, ds.m_idx] = ds.y
    fail = 1.0 - np.nanmean(mat, axis=1)
    n_s = ds.struct.shape[1]
    dim = int(hp.get("token_dim") or 0)
    table, tw = token_table(ds, prompt_mask, dim, hp["sif_a"])
    emb = token_means(ds, table, tw)
    mu_e = emb[prompt_mask].mean(axis=0)
    sd_e = emb[prompt_mask].std(axis=0)
    sd_e = np.where(sd_e < 1e-9, 1.0, sd_e)
    xs = np.c_[np.clip((ds.struct - mu) / sd, -5.0, 5.0), (emb - mu_e) / sd_e]
    lam = np.r_[np.full(n_s, hp["l2_difficulty"]), np.full(dim, hp["l2_tokens"])]
    xc = xs.copy()
    yz = np.zeros(P)
    w = np.zeros(P)
    groups = [g for g in range(len(ds.group_names)) if (prompt_mask & (ds.group == g)).any()]
    if hp.get("difficulty_mode", "within") == "pooled":
        # one standardisation per source file: its benchmarks keep their differences, but the
        # two files (different model pools, different scales) are not compared with each other
        files = np.array([n.split("/")[0] for n in ds.group_names])[ds.group]
        units = [prompt_mask & (files == f) for f in sorted(set(files[prompt_mask]))]
    else:
        units = [prompt_mask & (ds.group == g) for g in groups]
    for i in units:
        xc[i] = xs[i] - xs[i].mean(axis=0)
        yz[i] = (fail[i] - fail[i].mean()) / (fail[i].std() + 1e-9)
    for g in groups:
        i = prompt_mask & (ds.group == g)
        w[i] = 1.0 / i.sum() / len(groups)
    ww = w[prompt_mask]
    beta = ridge_length_floor(xc[prompt_mask], yz[prompt_mask], ww, lam)
    # calibrate: difficulty = sigmoid(alpha + gamma * score) ~ failure rate (group-balanced)
    sc = xs[prompt_mask] @ beta
    f = fail[prompt_mask]
    alpha, gamma = 0.0, 1.0
    for _ in range(50):
        pr = 1.0 / (1.0 + np.exp(-(alpha + gamma * sc)))
        r = ww * (pr - f)
        h = ww * pr * (1 - pr)
        g = np.array([r.sum(), (r * sc).sum()])
        hm = np.array([[h.sum(), (h * sc).sum()], [(h * sc).sum(), (h * sc * sc).sum()]]) + 1e-9 * np.eye(2)
        step = np.linalg.solve(hm, g)
        alpha, gamma = alpha - step[0], gamma - step[1]
        if np.abs(step).max() < 1e-12:
            break
    beta = beta * gamma
    b_e = beta[n_s:] / sd_e
    u = table @ b_e  # contribution of each token to the difficulty logit (before averaging)
    used = (table != 0).any(axis=1) if dim else np.zeros(ds.vocab.size, dtype=bool)
    return beta[:n_s], float(alpha - mu_e @ b_e), ds.vocab[used], (tw * u)[used], tw[used]


def forward(p: Params, buckets: list[np.ndarray], struct: np.ndarray, tokens: list[np.ndarray]) -> np.ndarray:
    """Prompt latents ``z`` (n x K), the same arithmetic as the ONNX graph."""
    xs = np.clip((struct - p.mu) / p.sd, -5.0, 5.0)
    t = np.stack([p.table[b].mean(axis=0) for b in buckets])
    z = t + xs @ p.w_struct + p.bias
    if p.hp.get("easiness_axis"):
        z[:, 0] -= difficulty_logit(p, struct, tokens)
    return z


def fit(ds: Dataset, prompt_mask: np.ndarray, hp: dict | None = None) -> Params:
    """Fit the model on the prompts where *prompt_mask* is true."""
    from scipy.optimize import minimize

    hp = {**DEFAULT_HP, **(hp or {})}
    rng = np.random.default_rng(SEED)
    keep = prompt_mask[ds.p_idx]
    p_all = np.flatnonzero(prompt_mask)
    remap = -np.ones(len(ds.prompts), dtype=np.int64)
    remap[p_all] = np.arange(p_all.size)
    pi = remap[ds.p_idx[keep]]
    mi = ds.m_idx[keep]
    y = ds.y[keep]
    gi = ds.group[ds.p_idx[keep]]
    P, M, G = p_all.size, len(ds.models), len(ds.group_names)
    # each benchmark group weighs the same
    counts = np.bincount(gi, minlength=G).astype(np.float64)
    present = counts > 0
    w = 1.0 / (counts[gi] * present.sum())
    X = bucket_matrix([ds.buckets[i] for i in p_all])
    XT = X.T.tocsr()
    gm = gi * M + mi
    S_raw = ds.struct[p_all]
    mu = S_raw.mean(axis=0)
    sd = S_raw.std(axis=0)
    sd = np.where(sd < 1e-6, 1.0, sd)
    S = np.clip((S_raw - mu) / sd, -5.0, 5.0)
    nS = S.shape[1]
    B1 = F.N_BUCKETS + 1
    d_w, d_b, tok_ids, tok_uw, tok_w = fit_difficulty(ds, prompt_mask, mu, sd, hp)
    easy = bool(hp.get("easiness_axis"))
    E = np.zeros((P, K))
    if easy:  # latent 0 = minus the difficulty logit (fixed input; each model fits its slope)
        head = Params(np.zeros((1, K)), np.zeros((nS, K)), np.zeros(K), mu, sd, d_w, d_b, tok_ids, tok_uw,
                      tok_w, np.zeros(0), np.zeros((0, K)), [], hp)  # fmt: skip
        E[:, 0] = -difficulty_logit(head, ds.struct[p_all], [ds.tokens[i] for i in p_all])
    shapes = [(B1, K), (nS, K), (K,), (M,), (M, K - 1), (G, M), (M,)]
    sizes = [int(np.prod(s)) for s in shapes]
    offs = np.cumsum([0, *sizes])

    def unpack(x):
        return [x[offs[i] : offs[i + 1]].reshape(shapes[i]) for i in range(len(shapes))]

    def loss(x):
        T, W, c, th, A1, beta, a0 = unpack(x)
        A = np.concatenate([a0[:, None], A1], axis=1)
        Z = np.asarray(X @ T) + S @ W + c + E
        logit = th[mi] + np.einsum("ij,ij->i", A[mi], Z[pi]) + beta[gi, mi]
        sig = 1.0 / (1.0 + np.exp(-logit))
        eps = 1e-9
        ll = -(y * np.log(sig + eps) + (1 - y) * np.log(1 - sig + eps))
        val = float((w * ll).sum())
        r = w * (sig - y)
        g_th = np.bincount(mi, r, minlength=M)
        g_beta = np.bincount(gm, r, minlength=G * M).reshape(G, M)
        g_A = np.stack([np.bincount(mi, r * Z[pi, k], minlength=M) for k in range(K)], axis=1)
        g_Z = np.stack([np.bincount(pi, r * A[mi, k], minlength=P) for k in range(K)], axis=1)
        g_T = np.asarray(XT @ g_Z)
        g_W = S.T @ g_Z
        g_c = g_Z.sum(axis=0)
        val += hp["l2_table"] * float((T * T).sum()) + hp["l2_struct"] * float((W * W).sum())
        val += hp["l2_model"] * float((A1 * A1).sum()) + hp["l2_beta"] * float((beta * beta).sum())
        g_T += 2 * hp["l2_table"] * T
        g_W += 2 * hp["l2_struct"] * W
        g_A1 = g_A[:, 1:] + 2 * hp["l2_model"] * A1
        g_beta += 2 * hp["l2_beta"] * beta
        g_a0 = g_A[:, 0]
        grad = np.concatenate([g.ravel() for g in (g_T, g_W, g_c, g_th, g_A1, g_beta, g_a0)])
        return val, grad

    x0 = np.zeros(offs[-1])
    # small deterministic init of the interaction dims (breaks the symmetry between them)
    _T0, W0, _c0, _th0, A10, _beta0, a00 = unpack(x0)
    W0[:, 1:] = rng.normal(0, 0.01, size=(nS, K - 1))
    A10[:] = rng.normal(0, 0.1, size=(M, K - 1))
    a00[:] = 1.0
    bounds: list[tuple[float | None, float | None]] = [(None, None)] * offs[-1]
    for m in range(M):  # a_0: fixed at 1 on a learned axis; on the easiness input, >= 0 (easier never hurts)
        bounds[offs[6] + m] = (0.0, None) if easy else (1.0, 1.0)
    if easy:  # nothing learned on latent 0: it is the difficulty head's easiness
        for row in range(B1):
            bounds[offs[0] + row * K] = (0.0, 0.0)
        for j in range(nS):
            bounds[offs[1] + j * K] = (0.0, 0.0)
        bounds[offs[2]] = (0.0, 0.0)
    keep_d = hp.get("difficulty_features")
    if keep_d is not None:
        for row in range(B1):
            bounds[offs[0] + row * K] = (0.0, 0.0)  # T[:, 0] = 0: no text on the difficulty axis
        for j, name in enumerate(F.STRUCT_NAMES):
            if name not in keep_d:
                bounds[offs[1] + j * K] = (0.0, 0.0)  # W[j, 0]
    if hp.get("length_floor") and not easy:
        for name in FLOOR_FEATURES:
            j = F.STRUCT_NAMES.index(name)
            lo = bounds[offs[1] + j * K][0]
            bounds[offs[1] + j * K] = (lo, 0.0)  # W[j, 0] <= 0: longer is never easier
    res = minimize(
        loss, x0, jac=True, method="L-BFGS-B", bounds=bounds, options={"maxiter": hp["maxiter"], "maxcor": 10}
    )
    T, W, c, th, A1, _beta, a0 = unpack(res.x)
    A = np.concatenate([a0[:, None], A1], axis=1)
    return Params(
        table=T.copy(),
        w_struct=W.copy(),
        bias=c.copy(),
        mu=mu,
        sd=sd,
        d_w=d_w,
        d_b=d_b,
        tok_ids=tok_ids,
        tok_uw=tok_uw,
        tok_w=tok_w,
        theta=th.copy(),
        a=A,
        models=list(ds.models),
        hp=hp,
    )


def model_vectors(p: Params) -> dict[str, list[float]]:
    """``{model: [theta, a_0, ..., a_{K-1}]}`` for the training pool."""
    return {m: [float(p.theta[i])] + [float(v) for v in p.a[i]] for i, m in enumerate(p.models)}


def tier_vectors(vecs: dict[str, list[float]]) -> dict[str, list[float]]:
    """Prior vectors per tier (mean of the tier's pool members) plus ``neutral`` (pool mean)."""
    out = {}
    for tier, members in TIERS.items():
        rows = [vecs[m] for m in members if m in vecs]
        if rows:
            out[tier] = [float(x) for x in np.mean(np.array(rows), axis=0)]
    out["neutral"] = [float(x) for x in np.mean(np.array(list(vecs.values())), axis=0)]
    return out


def export(p: Params, out_dir: Path, ds: Dataset, metrics: dict | None) -> None:
    """Write ``predictor.onnx`` and the ``predictor.json`` sidecar into *out_dir*."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    f32 = np.float32
    uw, tw = dense_token_tables(p)
    init = [
        numpy_helper.from_array(p.table.astype(f32), "table"),
        numpy_helper.from_array(p.w_struct.astype(f32), "w_struct"),
        numpy_helper.from_array(p.bias.astype(f32), "bias"),
        numpy_helper.from_array(p.mu.astype(f32), "mu"),
        numpy_helper.from_array(p.sd.astype(f32), "sd"),
        numpy_helper.from_array(np.array(-5.0, f32), "lo"),
        numpy_helper.from_array(np.array(5.0, f32), "hi"),
        numpy_helper.from_array(np.array([0], np.int64), "axis0"),
        numpy_helper.from_array(np.array([1.0], f32), "one"),
        numpy_helper.from_array(p.d_w.astype(f32).reshape(-1, 1), "d_w"),
        numpy_helper.from_array(np.array([p.d_b], f32), "d_b"),
        numpy_helper.from_array(uw.astype(f32), "tok_uw"),
        numpy_helper.from_array(tw.astype(f32), "tok_w"),
        numpy_helper.from_array(np.array(uw.size - 1, np.int64), "tok_last"),
        numpy_helper.from_array(np.array([1e-6], f32), "tiny"),
    ]
    easy = bool(p.hp.get("easiness_axis"))
    if easy:  # latent 0 = minus the difficulty logit
        init.append(numpy_helper.from_array(np.r_[-1.0, np.zeros(K - 1)].astype(f32), "e0"))
    nodes = [
        helper.make_node("Sub", ["struct", "mu"], ["s_c"]),
        helper.make_node("Div", ["s_c", "sd"], ["s_n"]),
        helper.make_node("Clip", ["s_n", "lo", "hi"], ["s_cl"]),
        helper.make_node("Unsqueeze", ["s_cl", "axis0"], ["s_row"]),
        helper.make_node("MatMul", ["s_row", "d_w"], ["d_row"]),
        helper.make_node("Squeeze", ["d_row", "axis0"], ["d_lin"]),
        helper.make_node("Min", ["tokens", "tok_last"], ["tok_id"]),
        helper.make_node("Gather", ["tok_uw", "tok_id"], ["tok_uw_g"], axis=0),
        helper.make_node("Gather", ["tok_w", "tok_id"], ["tok_w_g"], axis=0),
        helper.make_node("ReduceSum", ["tok_uw_g", "axis0"], ["tok_num"], keepdims=1),
        helper.make_node("ReduceSum", ["tok_w_g", "axis0"], ["tok_den0"], keepdims=1),
        helper.make_node("Max", ["tok_den0", "tiny"], ["tok_den"]),
        helper.make_node("Div", ["tok_num", "tok_den"], ["tok_mean"]),
        helper.make_node("Add", ["d_lin", "tok_mean"], ["d_lin2"]),
        helper.make_node("Add", ["d_lin2", "d_b"], ["d_logit"]),
        helper.make_node("Sigmoid", ["d_logit"], ["difficulty"]),
        helper.make_node("Gather", ["table", "buckets"], ["emb"], axis=0),
        helper.make_node("ReduceMean", ["emb", "axis0"], ["tmean"], keepdims=0),
        helper.make_node("MatMul", ["s_row", "w_struct"], ["s_proj_row"]),
        helper.make_node("Squeeze", ["s_proj_row", "axis0"], ["s_proj"]),
        helper.make_node("Add", ["tmean", "s_proj"], ["z0"]),
        *(
            [
                helper.make_node("Add", ["z0", "bias"], ["z_net"]),
                helper.make_node("Mul", ["d_logit", "e0"], ["z_easy"]),
                helper.make_node("Add", ["z_net", "z_easy"], ["latent"]),
            ]
            if easy
            else [helper.make_node("Add", ["z0", "bias"], ["latent"])]
        ),
        helper.make_node("Concat", ["one", "latent"], ["z1"], axis=0),
        helper.make_node("MatMul", ["model_vectors", "z1"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], ["quality"]),
    ]
    nS = p.w_struct.shape[0]
    graph = helper.make_graph(
        nodes,
        "llmroute_predictor",
        [
            helper.make_tensor_value_info("buckets", TensorProto.INT64, ["n"]),
            helper.make_tensor_value_info("struct", TensorProto.FLOAT, [nS]),
            helper.make_tensor_value_info("model_vectors", TensorProto.FLOAT, ["m", K + 1]),
            helper.make_tensor_value_info("tokens", TensorProto.INT64, ["t"]),
        ],
        [
            helper.make_tensor_value_info("quality", TensorProto.FLOAT, ["m"]),
            helper.make_tensor_value_info("latent", TensorProto.FLOAT, [K]),
            helper.make_tensor_value_info("difficulty", TensorProto.FLOAT, [1]),
        ],
        init,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="llmroute-train")
    model.ir_version = 9
    onnx.checker.check_model(model)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_bytes = model.SerializeToString(deterministic=True)
    (out_dir / "predictor.onnx").write_bytes(onnx_bytes)
    vecs = model_vectors(p)
    sidecar = {
        "format": "llmroute-predictor",
        "version": 1,
        "onnx_sha256": hashlib.sha256(onnx_bytes).hexdigest(),
        "features": {
            "version": F.FEATURE_VERSION,
            "encoding": F.ENCODING,
            "head_chars": F.HEAD_CHARS,
            "tail_chars": F.TAIL_CHARS,
            "n_buckets": F.N_BUCKETS,
            "struct": list(F.STRUCT_NAMES),
        },
        "latent_dim": K,
        "vector_layout": "[theta, a_0..a_{K-1}]; logit q = theta + a . latent; "
        + ("latent_0 = -logit(difficulty), a_0 >= 0" if easy else "a_0 = 1"),
        "difficulty": "sigmoid(d_w . clip((struct - mu) / sd, -5, 5) + sum(tok_uw[t]) / sum(tok_w[t]) + d_b) "
        "over the window's o200k token ids t (ids past the table -> its last row): ridge on failure rates "
        f"standardised per {'source file' if p.hp.get('difficulty_mode') == 'pooled' else 'benchmark'}, "
        "calibrated to the failure rate; tok_uw / tok_w are a SIF-weighted "
        "all-MiniLM-L6-v2 static token table folded to one number per token",
        "token_table": {
            "encoder": "sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0), training time only",
            "tokens": int(p.tok_ids.size),
            "dim": int(p.hp.get("token_dim") or 0),
            "sif_a": p.hp.get("sif_a"),
        },
        "models": vecs,
        "tiers": tier_vectors(vecs),
        "tier_members": TIERS,
        "training": {
            "files": ds.hashes,
            "excluded": list(EXCLUDED),
            "prompts": len(ds.prompts),
            "cells": int(ds.y.size),
            "seed": SEED,
            "hyperparameters": p.hp,
            "command": "python -m training.train_predictor --eval",
        },
        "metrics": metrics or {},
    }
    (out_dir / "predictor.json").write_text(json.dumps(sidecar, indent=1, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Train on all data, export, optionally evaluate and write the model card."""
    ap = argparse.ArgumentParser(prog="python -m training.train_predictor", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=default_data_dir(), help="routing data folder")
    ap.add_argument("--out", type=Path, default=REPO / "models", help="output folder")
    ap.add_argument("--eval", action="store_true", help="also run evaluate.py and write MODEL_CARD.md")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="override a hyperparameter for an ablation, e.g. --set easiness_axis=false "
        "--set difficulty_mode='\"within\"' (use with --out elsewhere: the shipped files use the defaults)",
    )
    args = ap.parse_args(argv)
    hp = dict(DEFAULT_HP)
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in DEFAULT_HP:
            ap.error(f"--set {key}: unknown hyperparameter (known: {', '.join(sorted(DEFAULT_HP))})")
        try:
            hp[key] = json.loads(value)
        except ValueError:
            ap.error(f'--set {item}: the value must be JSON (true, 0.3, "within")')
    np.random.seed(SEED)
    ds = load_dataset(args.data)
    print(f"{len(ds.prompts)} prompts, {ds.y.size} cells, {len(ds.models)} models", file=sys.stderr)
    metrics = None
    if args.eval:
        from training import evaluate

        metrics = evaluate.run(ds, hp)
    params = fit(ds, np.ones(len(ds.prompts), dtype=bool), hp)
    export(params, args.out, ds, metrics)
    if metrics is not None:
        from training import evaluate

        evaluate.write_card(args.out / "MODEL_CARD.md", ds, metrics, params)
    print(f"wrote {args.out / 'predictor.onnx'} and {args.out / 'predictor.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
