"""The HTTP server both planes run: aiohttp's, with two additions it has no setting for.

- A request's line and headers must arrive within `header_timeout` of the connection opening, or of the
  first byte of the next request on a kept-alive connection; a client that sends nothing or trickles its
  headers (slowloris) is answered 408 RequestTimeoutException and disconnected, instead of holding a
  connection for aiohttp's keep-alive time (an hour). The idle time between requests stays aiohttp's.
- A request aiohttp cannot parse (a bad request line, a header line past `max_line_size`/`max_field_size`,
  a malformed chunk) gets the plane's AWS error shape, like every other refusal, instead of plain text.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import uuid
from http import HTTPStatus
from typing import Any

import orjson
from aiohttp import StreamReader, web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from iotjobs.domain.errors import ErrorKind
from iotjobs.runtime import logs
from iotjobs.wire.http_errors import error_response

log = logs.get("iotjobs.http")

ErrorTable = dict[str, tuple[str, int]]
TIMEOUT_ERROR = "RequestTimeoutException"
"""The code AWS SDKs retry as a transient request timeout."""


class BoundedRequestHandler(RequestHandler):
    """aiohttp's connection protocol, with a timer on the arrival of each request's headers."""

    def __init__(self, manager: web.Server, *, header_timeout: float, errors: ErrorTable, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._header_timeout = header_timeout
        self._errors = errors
        self._header_timer: asyncio.TimerHandle | None = None
        self._awaiting_headers = True
        self._answered_body: StreamReader | None = None
        """The body of the request answered last: bytes that arrive before its end belong to it."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._awaiting_headers and data and self._header_timer is None and self._answered_body_done():
            self._arm()  # the first byte of the next request on a kept-alive connection
        parsed = self._request_count
        super().data_received(data)
        if self._request_count != parsed:  # a request's line and headers are complete (or refused)
            self._disarm()
            self._awaiting_headers = False

    async def finish_response(
        self, request: BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        answered = await super().finish_response(request, resp, start_time)
        # The next request's headers are awaited unless a pipelined request is parsed and queued already.
        self._awaiting_headers = not self._messages
        self._answered_body = request.content
        return answered

    def _answered_body_done(self) -> bool:
        return self._answered_body is None or self._answered_body.is_eof()

    def _arm(self) -> None:
        if self._header_timeout > 0:
            self._header_timer = self._loop.call_later(self._header_timeout, self._headers_timed_out)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_timed_out(self) -> None:
        self._header_timer = None
        if self.transport is None or self._request_in_progress:
            return
        message = f"the request line and headers did not arrive within {self._header_timeout:g} s"
        log.info("closing a connection whose request headers did not arrive", peer=self.peername, error=message)
        body = orjson.dumps({"__type": TIMEOUT_ERROR, "message": message})
        head = (
            "HTTP/1.1 408 Request Timeout\r\n"
            "Content-Type: application/json\r\n"
            f"x-amzn-ErrorType: {TIMEOUT_ERROR}\r\n"
            f"x-amzn-RequestId: {uuid.uuid4()}\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        self.transport.write(head.encode() + body)
        self.force_close()  # the transport sends what it holds, then closes

    def log_exception(self, *args: Any, **kw: Any) -> None:
        error = kw.get("exc_info")
        if isinstance(error, web.RequestPayloadError):
            # Met while draining a body the handler left unread, once the answer is sent: a body that does
            # not decode as its Content-Encoding says is the client's fault, and the connection just closes.
            log.info("closing a connection whose unread request body cannot be decoded", error=str(error))
            return
        super().log_exception(*args, **kw)

    def handle_error(
        self, request: BaseRequest, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        """aiohttp's answer to a request it could not parse or a handler that failed outside the app, in
        the plane's error shape; only a server fault is logged with its traceback."""
        if status >= 500:
            self.log_exception("Error handling request", exc_info=exc)
            name = self._errors[ErrorKind.INTERNAL][0]
            message = HTTPStatus(status).phrase
        else:
            log.info("refused a request that could not be parsed", status=status, error=message or repr(exc))
            name = self._errors[ErrorKind.INVALID_REQUEST][0]
            message = f"the request is not well-formed HTTP: {message or HTTPStatus(status).phrase}"
        if request.writer.output_size > 0:
            raise ConnectionError("a response is under way; no error can follow it")
        response = error_response(name, status, message)
        response.headers["x-amzn-RequestId"] = str(uuid.uuid4())
        response.force_close()
        return response


class BoundedServer(web.Server):
    """aiohttp's low-level server, making a BoundedRequestHandler for every connection."""

    def __init__(
        self, *args: Any, header_timeout: float, errors: ErrorTable, handler_args: dict[str, Any], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._bounds = {"header_timeout": header_timeout, "errors": errors, **handler_args}

    def __call__(self) -> RequestHandler:
        return BoundedRequestHandler(self, loop=asyncio.get_running_loop(), **self._bounds)


class BoundedRunner(web.AppRunner):
    """An AppRunner whose server is a BoundedServer."""

    def __init__(self, app: web.Application, *, header_timeout: float, errors: ErrorTable, **handler_args: Any) -> None:
        super().__init__(app, handle_signals=True, **handler_args)
        self._header_timeout = header_timeout
        self._errors = errors
        self._handler_args = handler_args

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()  # the app started, and aiohttp's own server for it
        return BoundedServer(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            header_timeout=self._header_timeout,
            errors=self._errors,
            handler_args=self._handler_args,
        )


async def _serve_forever(runner: BoundedRunner, host: str, port: int, ssl_context: ssl.SSLContext | None) -> None:
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
        await asyncio.Event().wait()  # until SIGTERM or SIGINT
    finally:
        await runner.cleanup()


def run(runner: BoundedRunner, host: str, port: int, ssl_context: ssl.SSLContext | None = None) -> None:
    """Serve (over HTTPS with `ssl_context`) until SIGTERM or SIGINT, then shut the app down as `web.run_app`
    does: the app's cleanup (which hands the owned partitions over) runs while every other task still runs;
    only then is what is left cancelled."""
    with asyncio.Runner() as session:
        loop = session.get_loop()
        serving = loop.create_task(_serve_forever(runner, host, port, ssl_context))
        with contextlib.suppress(web.GracefulExit, KeyboardInterrupt):
            loop.run_until_complete(serving)
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError, web.GracefulExit, KeyboardInterrupt):
            loop.run_until_complete(serving)
