"""One way to open the shipped ONNX models: files checked against their sidecar, an inline session."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any, ClassVar, TypeVar

__all__ = ["ShippedModel", "inline_session", "read_checked"]


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


_M = TypeVar("_M", bound="ShippedModel")


class ShippedModel:
    """What the shipped ONNX models share: an ``.onnx`` file and its JSON sidecar, read and checked
    once (thread-safe, on first need), and an inline session created on first use.

    A subclass names its file, label and error, checks the sidecar's feature spec in
    :meth:`_check_meta` and may keep what it needs from the new session in :meth:`_opened`.
    """

    FILE_NAME: ClassVar[str]
    LABEL: ClassVar[str]
    ERROR: ClassVar[type[Exception]]

    def __init__(self, onnx_path: str | Path, sidecar_path: str | Path | None = None) -> None:
        self.onnx_path = Path(onnx_path)
        self.sidecar_path = Path(sidecar_path) if sidecar_path is not None else self.onnx_path.with_suffix(".json")
        self._lock = threading.Lock()
        self._session: Any = None
        self._meta: dict[str, Any] | None = None
        self._onnx_bytes = b""
        self._model_id = ""
        self._warned = False

    _default: ClassVar[Any] = None
    _default_lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def default(cls: type[_M]) -> _M:
        """The process-wide model over the shipped files (nothing is loaded until first use)."""
        if cls.__dict__.get("_default") is None:
            with ShippedModel._default_lock:
                if cls.__dict__.get("_default") is None:
                    from .predictor import default_model_dir

                    cls._default = cls(default_model_dir() / cls.FILE_NAME)
        return cls.__dict__["_default"]  # type: ignore[no-any-return]

    @classmethod
    def _load(cls, path: str | Path) -> Any:
        p = Path(path)
        if p.is_dir():
            p = p / cls.FILE_NAME
        model = cls(p)
        model._ensure_meta()
        return model

    def _check_meta(self, meta: dict[str, Any]) -> None:
        """Raise ``ERROR`` when the sidecar was written for features this llmroute does not compute."""

    def _opened(self, session: Any) -> None:
        """Called once, under the lock, with the new session before it is published."""

    def _ensure_meta(self) -> dict[str, Any]:
        if self._meta is not None:
            return self._meta
        with self._lock:
            if self._meta is not None:
                return self._meta
            data, meta, digest = read_checked(self.onnx_path, self.sidecar_path, self.LABEL, self.ERROR)
            self._check_meta(meta)
            self._onnx_bytes = data
            self._model_id = digest[:12]
            self._meta = meta
            return meta

    def _ensure_session(self) -> Any:
        if self._session is not None:
            return self._session
        self._ensure_meta()
        with self._lock:
            if self._session is None:
                sess = inline_session(self._onnx_bytes, f"{self.LABEL} model {self.onnx_path}", self.ERROR)
                self._opened(sess)
                self._session = sess
        return self._session

    @property
    def model_id(self) -> str:
        """First 12 hex digits of the ONNX file's sha256."""
        self._ensure_meta()
        return self._model_id
