"""The HTTP package behind the router's client: ``httpx`` or ``httpx2``, found once, at construction.

``httpx2`` (the package current ``openai``, ``anthropic``, ``pydantic-ai`` and ``openai-agents``
releases use) has the same API as ``httpx`` but its own classes: a client of one package only
accepts requests of that package, and raises that package's exceptions. :func:`wire_for` looks at
the client (or transport) a user hands the router and returns the :class:`Wire` of its package:
the request and URL classes to build requests with, and the exception classes to map at the
boundary. ``httpx2`` stays optional: it is imported only when the client is one of its own.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import httpx

from .errors import ProviderConnectionError, ProviderError, ProviderTimeoutError, ResponseError

__all__ = ["HTTPX", "Wire", "package_of", "wire_for"]

#: The packages whose clients and transports the router accepts.
PACKAGES = ("httpx", "httpx2")


@dataclass(frozen=True, slots=True)
class Wire:
    """One HTTP package's request classes and exception tree (``httpx`` or ``httpx2``)."""

    package: str
    Request: Any
    URL: Any
    Response: Any
    AsyncClient: Any
    Limits: Any
    Timeout: Any
    #: Root of the package's exceptions: what a ``send`` may raise.
    HTTPError: Any
    #: Errors raised before any byte of the request left: the provider never saw it.
    not_sent: tuple[type[BaseException], ...]
    TimeoutException: Any
    RemoteProtocolError: Any
    TransportError: Any
    LocalProtocolError: Any

    @classmethod
    def of(cls, module: Any) -> Wire:
        """The wire of an imported ``httpx``-like *module*."""
        return cls(
            package=module.__name__,
            Request=module.Request,
            URL=module.URL,
            Response=module.Response,
            AsyncClient=module.AsyncClient,
            Limits=module.Limits,
            Timeout=module.Timeout,
            HTTPError=module.HTTPError,
            not_sent=(module.ConnectError, module.ConnectTimeout, module.PoolTimeout, module.UnsupportedProtocol),
            TimeoutException=module.TimeoutException,
            RemoteProtocolError=module.RemoteProtocolError,
            TransportError=module.TransportError,
            LocalProtocolError=module.LocalProtocolError,
        )

    def map_error(self, exc: BaseException, fields: dict[str, Any], *, reading: bool) -> ProviderError:
        """This package's exception as a ProviderError (the caller raises it ``from exc``).

        A ``LocalProtocolError`` is the HTTP stack refusing to *send* the request (e.g. h11's
        "Illegal header value"): its text, and that of the httpcore/h11 errors it chains, may quote a
        request header, API key included. That text is blanked along the whole chain and the error
        says only what kind of failure it was; it is not retried (the same request fails the same way).
        """
        if isinstance(exc, self.LocalProtocolError):
            link: BaseException | None = exc
            for _ in range(8):  # the chain is httpx -> httpcore -> h11; bounded against cycles
                if link is None:
                    break
                link.args = ("(details withheld: they may quote request headers)",)
                link = link.__cause__ or link.__context__
            return ProviderError(
                f"the HTTP client refused to send the request ({type(exc).__name__}; an invalid header or URL, "
                "details withheld: they may quote request headers)",
                **fields,
            )
        if isinstance(exc, self.TimeoutException):
            return ProviderTimeoutError(f"timed out ({type(exc).__name__})", **fields)
        if isinstance(exc, self.RemoteProtocolError) and reading:
            return ResponseError(f"connection closed mid-response ({exc})", **fields)
        if isinstance(exc, self.TransportError):
            return ProviderConnectionError(f"connection failed ({type(exc).__name__}: {exc})", **fields)
        return ProviderError(f"HTTP error ({type(exc).__name__}: {exc})", **fields)


#: The wire of the ``httpx`` package (llmroute's own dependency).
HTTPX = Wire.of(httpx)


def package_of(obj: object) -> str | None:
    """The HTTP package (``"httpx"`` or ``"httpx2"``) whose class *obj* is an instance of, else ``None``.

    Subclasses count: a user's own ``httpx2.AsyncClient`` subclass is an ``httpx2`` client.
    """
    for cls in type(obj).__mro__:
        root = cls.__module__.partition(".")[0]
        if root in PACKAGES:
            return root
    return None


def wire_for(obj: object | None) -> Wire:
    """The :class:`Wire` of the package of a client or transport *obj*.

    ``httpx`` for ``None`` and for objects of neither package (duck-typed clients and transports
    keep working as ``httpx`` ones). After ``httpx2.alias_httpx()`` the two names are one package:
    then this is ``httpx2``'s wire under either name.
    """
    package = None if obj is None else package_of(obj)
    if package is None:
        return HTTPX
    module = importlib.import_module(package)
    return HTTPX if module is httpx else Wire.of(module)
