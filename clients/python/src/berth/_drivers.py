"""Who performs the I/O of `_steps`' generators: blocking (`SyncDriver`) or asyncio
(`AsyncDriver`). Each gives `run(op)`: the op's answer, or for `AsyncDriver` a coroutine of it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Any, Union
from urllib.parse import urlencode

import httpx
import websockets.asyncio.client
import websockets.sync.client
from websockets.exceptions import ConnectionClosed, InvalidStatus

from ._steps import Close, Op, Open, Receive, Request, Response, Send, Sleep, Step, T, error_of
from .errors import BerthConnectionError


class _Base:
    def __init__(self, base_url: str, token: str, timeout: float) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"{base_url!r} is not an http:// or https:// URL of a Berth server")
        self.base_url = base_url.rstrip("/")
        self.headers = {"authorization": f"Bearer {token}"}
        self.timeout = timeout

    def _http_args(self, request: Request) -> dict[str, Any]:
        headers = {}
        if request.content_type:
            headers["content-type"] = request.content_type
        return {
            "method": request.method,
            "url": request.path,
            "params": request.params,
            "json": request.json,
            "content": request.content,
            "headers": headers,
        }

    @staticmethod
    def _response(response: httpx.Response) -> Response:
        return Response(
            status=response.status_code,
            content_type=response.headers.get("content-type", ""),
            body=response.content,
        )

    def _ws_url(self, step: Open) -> str:
        url = "ws" + self.base_url[len("http") :] + step.path
        return f"{url}?{urlencode(step.params)}" if step.params else url

    def _ws_args(self) -> dict[str, Any]:
        return {"additional_headers": self.headers, "open_timeout": self.timeout, "max_size": None}

    def _dispatch(self, step: Step) -> Any:
        """The step's result; from `AsyncDriver`, a coroutine of it."""
        if isinstance(step, Request):
            return self.request(step)
        if isinstance(step, Open):
            return self.open(step)
        if isinstance(step, Send):
            return step.socket.send(step.message)
        if isinstance(step, Receive):
            return self.receive(step.socket)
        if isinstance(step, Close):
            return step.socket.close()
        if isinstance(step, Sleep):
            return self.sleep(step.seconds)
        raise TypeError(f"unknown step {step!r}")

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        """Errors of httpx and websockets as Berth's."""
        try:
            yield
        except InvalidStatus as err:
            response = err.response
            content_type = response.headers.get("content-type", "")
            raise error_of(response.status_code, content_type, response.body or b"") from None
        except (httpx.TransportError, OSError, ConnectionClosed) as err:
            raise BerthConnectionError(f"cannot reach Berth at {self.base_url}: {err}") from err


class SyncDriver(_Base):
    def __init__(self, base_url: str, token: str, timeout: float) -> None:
        super().__init__(base_url, token, timeout)
        self.http = httpx.Client(base_url=self.base_url, headers=self.headers, timeout=timeout)

    def run(self, op: Op[T]) -> T:
        result: Any = None
        while True:
            try:
                step = op.send(result)
            except StopIteration as done:
                return done.value
            with self._translated():
                result = self._dispatch(step)

    def request(self, step: Request) -> Response:
        return self._response(self.http.request(**self._http_args(step)))

    def open(self, step: Open) -> Any:
        connection = websockets.sync.client.connect(self._ws_url(step), **self._ws_args())
        # Entered as its own context manager (websockets 17.1 warns about a connection used
        # without one); the stream's close() is the matching exit.
        return connection.__enter__()

    @staticmethod
    def receive(socket: Any) -> Union[str, bytes, None]:
        try:
            return socket.recv()
        except ConnectionClosed:
            return None

    sleep = staticmethod(time.sleep)

    def close(self) -> None:
        self.http.close()


class AsyncDriver(_Base):
    def __init__(self, base_url: str, token: str, timeout: float) -> None:
        super().__init__(base_url, token, timeout)
        self.http = httpx.AsyncClient(base_url=self.base_url, headers=self.headers, timeout=timeout)

    async def run(self, op: Op[T]) -> T:
        result: Any = None
        while True:
            try:
                step = op.send(result)
            except StopIteration as done:
                return done.value
            with self._translated():
                result = await self._dispatch(step)

    async def request(self, step: Request) -> Response:
        return self._response(await self.http.request(**self._http_args(step)))

    async def open(self, step: Open) -> Any:
        return await websockets.asyncio.client.connect(self._ws_url(step), **self._ws_args())

    @staticmethod
    async def receive(socket: Any) -> Union[str, bytes, None]:
        try:
            return await socket.recv()
        except ConnectionClosed:
            return None

    sleep = staticmethod(asyncio.sleep)

    async def close(self) -> None:
        await self.http.aclose()


Driver = Union[SyncDriver, AsyncDriver]
