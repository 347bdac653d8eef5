"""One way to open the shipped ONNX models: files checked against their sidecar, an inline session."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

__all__ = ["inline_session", "read_checked"]


def inline_session(data: bytes, label: str, error: type[Exception]) -> Any:
    """An ``onnxruntime.InferenceSession`` over the model bytes *data*, with one intra-op and one
    inter-op thread, run sequentially, warnings off. Raises *error* (naming *label*) when
    onnxruntime is missing or refuses the model."""
    try:
        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover - runtime dependency
        raise error("onnxruntime is not installed") from exc
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise error(f"{label} could not be loaded by onnxruntime: {exc}") from exc


def read_checked(onnx_path: Path, sidecar_path: Path, label: str, error: type[Exception]) -> tuple[bytes, dict, str]:
    """``(model bytes, sidecar dict, sha256 hex)`` of a shipped model, its sidecar's ``onnx_sha256``
    checked. Raises *error* (messages start with *label*) when a file is missing, unreadable, not
    JSON, or the two do not match."""
    try:
        data = onnx_path.read_bytes()
    except OSError as exc:
        raise error(f"{label} model not found or unreadable: {onnx_path} ({exc.strerror or exc})") from exc
    try:
        meta = json.loads(sidecar_path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise error(f"{label} sidecar not found or unreadable: {sidecar_path}") from exc
    except ValueError as exc:
        raise error(f"{label} sidecar is not valid JSON: {sidecar_path}") from exc
    digest = hashlib.sha256(data).hexdigest()
    want = meta.get("onnx_sha256") if isinstance(meta, dict) else None
    if want != digest:
        raise error(
            f"{label} model {onnx_path} is corrupt or does not match its sidecar "
            f"(sha256 {digest[:12]}..., sidecar says {str(want)[:12]}...)"
        )
    return data, meta, digest
