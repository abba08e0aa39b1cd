"""The client's protocol, without I/O.

Every API call is written once, as a generator that yields the I/O it needs (`Request`, `Open`,
`Send`, `Receive`, `Sleep`) and is sent back each result. `_drivers.py` runs these generators:
`SyncDriver` with blocking httpx and websockets calls, `AsyncDriver` with their asyncio
counterparts. So the blocking `Berth` and the asyncio `AsyncBerth` share every line of
protocol, and differ only in who performs the I/O.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, TypeVar, Union

from .errors import BerthError

T = TypeVar("T")


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    params: list[tuple[str, str]] = field(default_factory=list)
    json: Any = None
    content: Optional[bytes] = None
    content_type: Optional[str] = None


@dataclass(frozen=True)
class Response:
    status: int
    content_type: str
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Open:
    """Opens a WebSocket on `path`; the result is the driver's socket."""

    path: str
    params: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Send:
    socket: Any
    message: Union[str, bytes]


@dataclass(frozen=True)
class Receive:
    """The next message (`str` or `bytes`); `None` once the socket is closed."""

    socket: Any


@dataclass(frozen=True)
class Close:
    socket: Any


@dataclass(frozen=True)
class Sleep:
    seconds: float


Step = Union[Request, Open, Send, Receive, Close, Sleep]

#: An API call: yields steps, is sent their results, returns its answer.
Op = Generator[Step, Any, T]


def error_of(status: int, content_type: str, body: bytes) -> BerthError:
    """Berth's JSON error body as an exception; a plain one for anything else in front of it."""
    if content_type.startswith("application/json"):
        try:
            error = json.loads(body)["error"]
            return BerthError(status, error["code"], error["message"], error.get("retry_after"))
        except (ValueError, KeyError, TypeError):
            pass
    text = body.decode("utf-8", "replace").strip()[:200]
    return BerthError(status, "unknown", f"HTTP {status}: {text or 'no body'}")


def check(response: Response) -> Response:
    if response.status >= 400:
        raise error_of(response.status, response.content_type, response.body)
    return response


def call(request: Request, parse: Callable[[Any], T]) -> Op[T]:
    """One request; its JSON answer through `parse`."""
    response = check((yield request))
    return parse(response.json())


def call_empty(request: Request) -> Op[None]:
    """One request whose answer has nothing to read."""
    check((yield request))


def call_bytes(request: Request) -> Op[bytes]:
    response = check((yield request))
    return response.body


def session_path(session_id: str, rest: str = "") -> str:
    from urllib.parse import quote

    path = f"/api/v1/sessions/{quote(session_id, safe='')}"
    return f"{path}/{rest}" if rest else path


def first_text(socket: Any, wanted: Callable[[dict[str, Any]], Optional[T]]) -> Op[T]:
    """Reads a socket up to the first text frame `wanted` accepts (returns non-`None` for)."""
    while True:
        message = yield Receive(socket)
        if message is None:
            raise BerthError(None, "closed", "the connection closed before it was ready")
        if isinstance(message, str):
            found = wanted(json.loads(message))
            if found is not None:
                return found


#: What `next_event` returns once a stream has ended.
END = object()


def next_event(socket: Any, decode: Callable[[Union[str, bytes]], Optional[Any]]) -> Op[Any]:
    """The next message `decode` makes an event of; `END` once the socket is closed."""
    while True:
        message = yield Receive(socket)
        if message is None:
            return END
        event = decode(message)
        if event is not None:
            return event
