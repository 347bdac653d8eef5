"""A small HTTP/1.1 server (``h11`` over asyncio streams) running in a background thread.

The thread owns its own event loop, so the code under test may use asyncio, trio or plain
threads. Keep-alive, chunked streaming, and the abrupt endings fault injection needs (reset with
RST, close mid-body) are supported. Nothing is logged per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import traceback
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus

import h11

__all__ = ["Request", "Responder", "ServerThread"]

_READ = 65536
_INTERNAL_ERROR = b'{"error":{"message":"llmroute.testing: internal error (see stderr)","type":"server_error"}}'
_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus} | {529: b"Site Overloaded"}


@dataclass(frozen=True, slots=True)
class Request:
    """A fully read HTTP request."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


class Responder:
    """The write side of one request: a whole response, or a streamed one, or an abrupt end."""

    __slots__ = ("_conn", "_head_bytes", "_pending", "_reader", "_writer", "done", "keep_alive", "on_final")

    def __init__(self, conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._conn = conn
        self._reader = reader
        self._writer = writer
        self._pending: list[bytes] = []
        self._head_bytes = b""
        #: Called once, just before the last bytes of the response (or the abort) leave, so
        #: counters are settled by the time the client sees the end of the response.
        self.on_final: Callable[[], None] | None = None
        #: The response ended normally (so the connection may serve another request).
        self.done = False
        #: False once the connection was (or must be) closed.
        self.keep_alive = True

    def finalize(self) -> None:
        """Run :attr:`on_final` if it has not run yet."""
        cb, self.on_final = self.on_final, None
        if cb is not None:
            cb()

    @property
    def closed(self) -> bool:
        """The connection is closing or gone (e.g. the client went away)."""
        return not self.keep_alive or self._writer.transport.is_closing()

    def _head(self, status: int, headers: Iterable[tuple[str, str]]) -> bytes:
        return (
            self._conn.send(h11.Response(status_code=status, headers=list(headers), reason=_REASONS.get(status, b"")))
            or b""
        )

    async def send(self, status: int, headers: Iterable[tuple[str, str]], body: bytes) -> None:
        """Send a complete response with a ``content-length``."""
        if self.closed:
            return
        hdrs = list(headers)
        hdrs.append(("content-length", str(len(body))))
        self.finalize()
        c = self._conn
        self._writer.write(
            self._head(status, hdrs) + (c.send(h11.Data(data=body)) or b"") + (c.send(h11.EndOfMessage()) or b"")
        )
        self.done = True
        await self._drain()

    def start(self, status: int, headers: Iterable[tuple[str, str]]) -> None:
        """Begin a streamed (chunked) response; the head leaves with the first :meth:`flush`."""
        self._head_bytes = self._head(status, headers)

    def write(self, data: bytes) -> None:
        """Queue one body chunk; it goes out at the next :meth:`flush` / :meth:`end` / :meth:`close`
        (callers flush before any pause, so every event leaves as soon as it is produced)."""
        if data:
            self._pending.append(data)

    def _take(self) -> bytes:
        head, self._head_bytes = self._head_bytes, b""
        if not self._pending:
            return head
        data = b"".join(self._pending)
        self._pending.clear()
        return head + (self._conn.send(h11.Data(data=data)) or b"")

    async def flush(self) -> bool:
        """Send the queued chunks now; False if the client is gone."""
        if self.closed:
            return False
        self._writer.write(self._take())
        await self._drain()
        return not self.closed

    async def end(self) -> None:
        """Send the queued chunks and finish the response (the terminating zero-length chunk)."""
        self.finalize()
        if not self.closed:
            self._writer.write(self._take() + (self._conn.send(h11.EndOfMessage()) or b""))
            self.done = True
            await self._drain()

    async def _drain(self) -> None:
        try:
            await self._writer.drain()
        except (ConnectionError, OSError):
            self.keep_alive = False

    async def close(self) -> None:
        """Close the connection gracefully (FIN) after what was written, e.g. mid-body."""
        self.finalize()
        if not self.closed:
            self._writer.write(self._take())
        self.keep_alive = False
        await self._drain()
        self._writer.transport.close()

    def reset(self) -> None:
        """Abort the connection with a TCP RST, without sending anything more."""
        self.finalize()
        self.keep_alive = False
        sock = self._writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._writer.transport.abort()

    async def idle(self, seconds: float) -> bool:
        """Send nothing for *seconds*; False (early) if the client closes the connection meanwhile."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            left = deadline - loop.time()
            if left <= 0:
                return True
            try:
                data = await asyncio.wait_for(self._reader.read(_READ), left)
            except (TimeoutError, asyncio.TimeoutError):
                return True
            except (ConnectionError, OSError):
                data = b""
            if not data:
                self.keep_alive = False
                return False
            self._conn.receive_data(data)  # pipelined bytes of a next request: h11 keeps them


Handler = Callable[[Request, Responder], Awaitable[None]]


class ServerThread:
    """Serves *handler* on ``host:port`` from a daemon thread with its own event loop."""

    def __init__(
        self, handler: Handler, host: str = "127.0.0.1", port: int = 0, *, name: str = "llmroute-fleet"
    ) -> None:
        self._handler = handler
        self.host = host
        self.port = port
        self._name = name
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def thread(self) -> threading.Thread | None:
        """The server thread while it runs."""
        return self._thread

    def start(self, timeout: float = 10.0) -> int:
        """Start the thread, bind the port, return it; raises the bind error if any."""
        if self._thread is not None:
            raise RuntimeError("server already running")
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("fleet server did not start in time")
        if self._error is not None:
            self._thread.join(timeout)
            self._thread = None
            raise self._error
        return self.port

    def stop(self, timeout: float = 5.0) -> None:
        """Close the listener and every connection (even mid-stall), then join the thread."""
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None:
            return
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(stop.set)
        thread.join(timeout)
        if thread.is_alive():
            raise RuntimeError("fleet server thread did not stop")
        self._thread = None

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # surfaced to start()
            self._error = exc
        finally:
            self._loop = None
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(
            self._on_connection, self.host, self.port, backlog=2048, reuse_address=True, limit=_READ
        )
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            server.close()
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            await server.wait_closed()
            for _ in range(3):  # let transports run their connection_lost callbacks
                await asyncio.sleep(0)

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request = await _read_request(conn, reader)
                if request is None:
                    break
                responder = Responder(conn, reader, writer)
                try:
                    await self._handler(request, responder)
                except Exception:  # a bug, or a user's reply callable: answer 500, say why, close
                    traceback.print_exc()
                    if conn.our_state is h11.SEND_RESPONSE and not responder.closed:
                        await responder.send(500, [("content-type", "application/json")], _INTERNAL_ERROR)
                    break
                if (
                    not responder.done
                    or not responder.keep_alive
                    or conn.our_state is not h11.DONE
                    or conn.their_state is not h11.DONE
                ):
                    break
                conn.start_next_cycle()
        except h11.RemoteProtocolError as exc:
            with contextlib.suppress(Exception):
                if conn.our_state is h11.SEND_RESPONSE or conn.our_state is h11.IDLE:
                    body = b'{"error":{"message":"bad HTTP request","type":"invalid_request_error",'
                    body += b'"param":null,"code":null}}'
                    status = exc.error_status_hint
                    head = h11.Response(
                        status_code=status,
                        headers=[
                            ("content-type", "application/json"),
                            ("content-length", str(len(body))),
                            ("connection", "close"),
                        ],
                    )
                    writer.write(
                        (conn.send(head) or b"")
                        + (conn.send(h11.Data(data=body)) or b"")
                        + (conn.send(h11.EndOfMessage()) or b"")
                    )
        except (ConnectionError, OSError, h11.LocalProtocolError):
            pass
        except asyncio.CancelledError:
            pass  # the fleet is stopping; end quietly (asyncio logs cancelled connection tasks)
        finally:
            self._tasks.discard(task)
            writer.close()


async def _read_request(conn: h11.Connection, reader: asyncio.StreamReader) -> Request | None:
    """Read one whole request (head and body); None when the client closed the connection."""
    head: h11.Request | None = None
    chunks: list[bytes] = []
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            try:
                data = await reader.read(_READ)
            except (ConnectionError, OSError):
                return None
            conn.receive_data(data)
        elif isinstance(event, h11.Request):
            head = event
        elif isinstance(event, h11.Data):
            chunks.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage):
            assert head is not None
            target = head.target.decode("latin-1")
            path, _, query = target.partition("?")
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in head.headers}
            return Request(head.method.decode("ascii"), path, query, headers, b"".join(chunks))
        else:  # ConnectionClosed, PAUSED
            return None
