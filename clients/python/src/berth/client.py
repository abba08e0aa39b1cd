"""The API, written once for both clients.

`Berth` runs each call to its end and returns the answer; `AsyncBerth` returns a coroutine of
the same answer to `await`, and its streams are iterated with `async for`. Both take their
protocol from `_steps`, so they cannot drift apart.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Optional, Union

from . import _steps as steps
from . import models
from ._drivers import AsyncDriver, Driver, SyncDriver
from ._steps import Close, Op, Open, Request, Send
from .errors import BerthError

__all__ = [
    "DEFAULT_URL",
    "AsyncBerth",
    "Berth",
    "EventStream",
    "Files",
    "ProcessStream",
    "Processes",
    "Session",
    "Sessions",
    "Snapshots",
    "Terminal",
]

#: The first byte of a process stream's binary frames: which stream the rest came from.
_STDOUT_TAG, _STDERR_TAG = 1, 2


def _command(
    cmd: Union[str, Sequence[str]],
    cwd: Optional[str],
    env: Optional[Mapping[str, str]],
    stdin: Optional[str],
    timeout_ms: Optional[int],
    keepalive: bool = False,
    pty: Optional[tuple[int, int]] = None,
) -> dict[str, Any]:
    """The API's ExecRequest. A string is run by `sh -c`; a list is run as it is. `pty` is
    `(cols, rows)`: the process runs under a terminal of that size."""
    body: dict[str, Any] = {"cmd": ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)}
    if cwd is not None:
        body["cwd"] = cwd
    if env:
        body["env"] = dict(env)
    if stdin is not None:
        body["stdin"] = stdin
    if timeout_ms is not None:
        body["timeout_ms"] = timeout_ms
    if keepalive:
        body["keepalive"] = True
    if pty is not None:
        body["pty"] = {"cols": pty[0], "rows": pty[1]}
    return body


class EventStream:
    """A WebSocket of events: `for event in stream` (`async for` with `AsyncBerth`).

    Iteration ends when the server closes the stream; `close()` ends it from this side. Use it
    as a context manager to close it whatever happens.
    """

    def __init__(
        self, driver: Driver, socket: Any, decode: Callable[[Union[str, bytes]], Optional[Any]]
    ) -> None:
        self._driver = driver
        self._socket = socket
        self._decode = decode

    def _send(self, message: Union[str, bytes]) -> Any:
        return self._driver.run(_send(self._socket, message))

    def __iter__(self) -> EventStream:
        return self

    def __next__(self) -> Any:
        event = self._driver.run(steps.next_event(self._socket, self._decode))
        if event is steps.END:
            raise StopIteration
        return event

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Any:
        event = await self._driver.run(steps.next_event(self._socket, self._decode))
        if event is steps.END:
            raise StopAsyncIteration
        return event

    def close(self) -> Any:
        return self._driver.run(_close(self._socket))

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()


def _send(socket: Any, message: Union[str, bytes]) -> Op[None]:
    yield Send(socket, message)


def _close(socket: Any) -> Op[None]:
    yield Close(socket)


def _decode_process(message: Union[str, bytes]) -> Optional[models.ProcessEvent]:
    if isinstance(message, bytes):
        tag, data = message[:1], message[1:]
        if tag == bytes([_STDOUT_TAG]):
            return models.Stdout(data)
        if tag == bytes([_STDERR_TAG]):
            return models.Stderr(data)
        return None
    event = json.loads(message)
    if event.get("type") == "end":
        return models.Exited(
            event.get("exit_code"), event.get("signal"), event.get("timed_out", False)
        )
    return None


class ProcessStream(EventStream):
    """A process whose output arrives as it is written: `Stdout`, `Stderr`, then `Exited`.

    A foreground one (`Session.exec_stream`) is killed when its stream closes, like
    `docker exec`; an attached background one (`Processes.attach`) keeps running.
    """

    def __init__(self, driver: Driver, socket: Any, started: dict[str, Any]) -> None:
        super().__init__(driver, socket, _decode_process)
        #: The process's id in the session: attach, signal and write stdin with it.
        self.id: str = started["id"]
        self.pid: int = started["pid"]

    def write_stdin(self, data: Union[bytes, str]) -> Any:
        return self._send(data.encode() if isinstance(data, str) else data)

    def close_stdin(self) -> Any:
        return self._send(json.dumps({"type": "close_stdin"}))

    def signal(self, signal: int) -> Any:
        """Sends `signal` (e.g. 15, SIGTERM) to the process's whole group."""
        return self._send(json.dumps({"type": "signal", "signal": signal}))

    def resize(self, cols: int, rows: int) -> Any:
        """Resizes the terminal of a process started with `pty`."""
        return self._send(json.dumps({"type": "resize", "cols": cols, "rows": rows}))

    def wait(self) -> Any:
        """Reads the stream to its end: the process's `Exited` (`None` if the stream broke)."""
        return self._driver.run(_last_event(self._socket))


def _last_event(socket: Any) -> Op[Optional[models.Exited]]:
    while True:
        event = yield from steps.next_event(socket, _decode_process)
        if event is steps.END:
            return None
        if isinstance(event, models.Exited):
            return event


def _started(message: dict[str, Any]) -> Optional[dict[str, Any]]:
    if message.get("type") == "error":
        raise BerthError(
            400, "invalid_request", message.get("message", "the process did not start")
        )
    return message if message.get("type") == "start" else None


def _open_process(path: str, request: Optional[dict[str, Any]]) -> Op[tuple[Any, dict[str, Any]]]:
    socket = yield Open(path)
    if request is not None:
        yield Send(socket, json.dumps(request))
    started = yield from steps.first_text(socket, _started)
    return socket, started


def _decode_terminal(message: Union[str, bytes]) -> Optional[models.TerminalEvent]:
    if isinstance(message, bytes):
        return models.TerminalOutput(message)
    event = json.loads(message)
    return models.TerminalExit(event.get("code")) if event.get("type") == "exit" else None


class Terminal(EventStream):
    """A terminal (a PTY running the session's shell): `TerminalOutput`, then `TerminalExit`.

    Closing the stream leaves the terminal running: reattach with `Session.terminal(
    terminal_id=...)`, its scrollback first.
    """

    def __init__(self, driver: Driver, socket: Any, terminal_id: str) -> None:
        super().__init__(driver, socket, _decode_terminal)
        self.id = terminal_id

    def send(self, keys: Union[bytes, str]) -> Any:
        """Types `keys`, e.g. `"ls\\n"`."""
        return self._send(keys.encode() if isinstance(keys, str) else keys)

    def resize(self, cols: int, rows: int) -> Any:
        return self._send(json.dumps({"type": "resize", "cols": cols, "rows": rows}))


def _ready(message: dict[str, Any]) -> Optional[str]:
    return message.get("terminal_id") if message.get("type") == "ready" else None


def _open_terminal(path: str, params: list[tuple[str, str]]) -> Op[tuple[Any, str]]:
    socket = yield Open(path, params)
    terminal_id = yield from steps.first_text(socket, _ready)
    return socket, terminal_id


def _open(path: str, params: list[tuple[str, str]]) -> Op[Any]:
    return (yield Open(path, params))


def _list_of(model: Any, key: str) -> Callable[[dict[str, Any]], list[Any]]:
    """Parses an answer that lists `model`s under `key`."""
    return lambda data: [model.from_json(item) for item in data[key]]


def _decode_json(parse: Callable[[dict[str, Any]], Any]) -> Callable[[Union[str, bytes]], Any]:
    def decode(message: Union[str, bytes]) -> Any:
        return parse(json.loads(message)) if isinstance(message, str) else None

    return decode


class Files:
    """The session's files. Paths are absolute, or relative to `/home/user`."""

    def __init__(self, driver: Driver, session_id: str) -> None:
        self._driver = driver
        self._path = lambda rest: steps.session_path(session_id, rest)

    def list(self, path: str = "/home/user") -> Any:
        """`list[FileEntry]`: the directory's entries."""
        request = Request("GET", self._path("files"), [("path", path)])
        return self._driver.run(steps.call(request, _list_of(models.FileEntry, "entries")))

    def stat(self, path: str) -> Any:
        """`FileEntry`."""
        request = Request("GET", self._path("files/stat"), [("path", path)])
        return self._driver.run(steps.call(request, models.FileEntry.from_json))

    def exists(self, path: str) -> Any:
        """`bool`."""
        return self._driver.run(_exists(Request("GET", self._path("files/stat"), [("path", path)])))

    def mkdir(self, path: str) -> Any:
        """`FileEntry`: makes the directory and its missing parents."""
        request = Request("POST", self._path("files/mkdir"), json={"path": path})
        return self._driver.run(steps.call(request, models.FileEntry.from_json))

    def move(self, source: str, destination: str, overwrite: bool = False) -> Any:
        """`FileEntry`: renames; an existing `destination` is replaced with `overwrite`, else
        refused (`conflict`)."""
        body = {"from": source, "to": destination, "overwrite": overwrite}
        request = Request("POST", self._path("files/move"), json=body)
        return self._driver.run(steps.call(request, models.FileEntry.from_json))

    def remove(self, path: str, recursive: bool = False) -> Any:
        params = [("path", path), ("recursive", "true" if recursive else "false")]
        return self._driver.run(steps.call_empty(Request("DELETE", self._path("files"), params)))

    def read(self, path: str) -> Any:
        """`bytes`: the file's content."""
        request = Request("GET", self._path("files/content"), [("path", path)])
        return self._driver.run(steps.call_bytes(request))

    def read_text(self, path: str, encoding: str = "utf-8") -> Any:
        """`str`: the file's content, decoded."""
        request = Request("GET", self._path("files/content"), [("path", path)])
        return self._driver.run(_decoded(steps.call_bytes(request), encoding))

    def write(self, path: str, data: Union[bytes, str]) -> Any:
        """`FileEntry`: writes `data` to `path`, making its parents; the old file is replaced
        once the upload has arrived whole."""
        content = data.encode() if isinstance(data, str) else data
        request = Request(
            "PUT",
            self._path("files/content"),
            [("path", path)],
            content=content,
            content_type="application/octet-stream",
        )
        return self._driver.run(steps.call(request, models.FileEntry.from_json))

    def upload_archive(self, directory: str, tar: bytes) -> Any:
        """Unpacks a tar into `directory`, keeping modes and symlinks."""
        request = Request(
            "PUT",
            self._path("files/archive"),
            [("path", directory)],
            content=tar,
            content_type="application/x-tar",
        )
        return self._driver.run(steps.call_empty(request))

    def download_archive(self, directory: str) -> Any:
        """`bytes`: `directory` as a tar."""
        request = Request("GET", self._path("files/archive"), [("path", directory)])
        return self._driver.run(steps.call_bytes(request))

    def watch(self, directory: str, recursive: bool = True) -> Any:
        """`EventStream` of `FileEvent`: changes under `directory`, from the moment this returns."""
        params = [("path", directory), ("recursive", "true" if recursive else "false")]
        decode = _decode_json(models.FileEvent.from_json)
        return self._driver.run(_stream(self._driver, self._path("files/watch"), params, decode))


def _exists(request: Request) -> Op[bool]:
    try:
        yield from steps.call_empty(request)
    except BerthError as err:
        if err.code == "not_found":
            return False
        raise
    return True


def _decoded(op: Op[bytes], encoding: str) -> Op[str]:
    return (yield from op).decode(encoding)


def _stream(
    driver: Driver,
    path: str,
    params: list[tuple[str, str]],
    decode: Callable[[Union[str, bytes]], Any],
) -> Op[EventStream]:
    socket = yield from _open(path, params)
    return EventStream(driver, socket, decode)


class Processes:
    """The session's background processes: they outlive every connection, and are listed,
    attached to, written to and signalled by id."""

    def __init__(self, driver: Driver, session_id: str) -> None:
        self._driver = driver
        self._path = lambda rest="": steps.session_path(
            session_id, f"processes{rest}" if rest else "processes"
        )

    def start(
        self,
        cmd: Union[str, Sequence[str]],
        *,
        cwd: Optional[str] = None,
        env: Optional[Mapping[str, str]] = None,
        stdin: Optional[str] = None,
        timeout_ms: Optional[int] = None,
        keepalive: bool = False,
        pty: Optional[tuple[int, int]] = None,
    ) -> Any:
        """`ProcessInfo`. With `keepalive`, the session stays awake while it runs; with `pty`
        (`(cols, rows)`), it runs under a terminal (output merged into stdout)."""
        body = _command(cmd, cwd, env, stdin, timeout_ms, keepalive, pty)
        return self._driver.run(
            steps.call(Request("POST", self._path(), json=body), models.ProcessInfo.from_json)
        )

    def list(self) -> Any:
        """`list[ProcessInfo]`."""
        return self._driver.run(
            steps.call(Request("GET", self._path()), _list_of(models.ProcessInfo, "processes"))
        )

    def attach(self, process_id: str) -> Any:
        """`ProcessStream`: its recent output first, then live output and its end."""
        path = self._path(f"/{_quote(process_id)}/attach")
        return self._driver.run(_process_stream(self._driver, path, None))

    def write_stdin(self, process_id: str, data: Union[bytes, str]) -> Any:
        content = data.encode() if isinstance(data, str) else data
        path = self._path(f"/{_quote(process_id)}/stdin")
        return self._driver.run(steps.call_empty(Request("POST", path, content=content)))

    def close_stdin(self, process_id: str) -> Any:
        path = self._path(f"/{_quote(process_id)}/stdin/close")
        return self._driver.run(steps.call_empty(Request("POST", path)))

    def signal(self, process_id: str, signal: int) -> Any:
        """Sends `signal` (e.g. 15, SIGTERM) to the process's whole group."""
        path = self._path(f"/{_quote(process_id)}/signal")
        return self._driver.run(steps.call_empty(Request("POST", path, json={"signal": signal})))

    def resize(self, process_id: str, cols: int, rows: int) -> Any:
        """Resizes the terminal of a process started with `pty`."""
        path = self._path(f"/{_quote(process_id)}/resize")
        body = {"cols": cols, "rows": rows}
        return self._driver.run(steps.call_empty(Request("POST", path, json=body)))


def _quote(segment: str) -> str:
    from urllib.parse import quote

    return quote(segment, safe="")


def _process_stream(
    driver: Driver, path: str, request: Optional[dict[str, Any]]
) -> Op[ProcessStream]:
    socket, started = yield from _open_process(path, request)
    return ProcessStream(driver, socket, started)


class Snapshots:
    """The session's named snapshots: copies of its files to fork new sessions from
    (`Sessions.create(from_snapshot=...)`)."""

    def __init__(self, driver: Driver, session_id: str) -> None:
        self._driver = driver
        self._path = steps.session_path(session_id, "snapshots")

    def create(self, name: str) -> Any:
        """`Snapshot`: the session pauses while its files are copied (`pause_ms`)."""
        request = Request("POST", self._path, json={"name": name})
        return self._driver.run(steps.call(request, models.Snapshot.from_json))

    def list(self) -> Any:
        """`list[Snapshot]`."""
        return self._driver.run(
            steps.call(Request("GET", self._path), _list_of(models.Snapshot, "snapshots"))
        )


class Session:
    """One user's isolated container: run commands, read and write files, open terminals,
    watch its ports. `info` is what Berth said of it last; `refresh()` asks again."""

    def __init__(self, driver: Driver, info: models.SessionInfo) -> None:
        self._driver = driver
        self.info = info
        self.files = Files(driver, info.id)
        self.processes = Processes(driver, info.id)
        self.snapshots = Snapshots(driver, info.id)

    @property
    def id(self) -> str:
        return self.info.id

    @property
    def state(self) -> str:
        return self.info.state

    def __repr__(self) -> str:
        return f"Session(id={self.id!r}, state={self.state!r}, template={self.info.template!r})"

    def _path(self, rest: str = "") -> str:
        return steps.session_path(self.id, rest)

    def _update(self, request: Request) -> Op[Session]:
        self.info = yield from steps.call(request, models.SessionInfo.from_json)
        return self

    def refresh(self) -> Any:
        """`Session` (itself), with `info` read again."""
        return self._driver.run(self._update(Request("GET", self._path())))

    def delete(self) -> Any:
        """Stops the session and removes its container; its files are gone."""
        return self._driver.run(steps.call_empty(Request("DELETE", self._path())))

    def extend(self, ttl_seconds: int) -> Any:
        """`Session`: it now expires `ttl_seconds` from now (at most its template's maximum)."""
        request = Request("POST", self._path("extend"), json={"ttl_seconds": ttl_seconds})
        return self._driver.run(self._update(request))

    def keepalive(self, seconds: int) -> Any:
        """`Session`: stays awake `seconds` from now, whatever its idle policy says."""
        request = Request("POST", self._path("keepalive"), json={"seconds": seconds})
        return self._driver.run(self._update(request))

    def hibernate(self) -> Any:
        """`Session`, once `hibernated`: its files wait in a snapshot, no container runs."""
        return self._driver.run(self._update(Request("POST", self._path("hibernate"))))

    def resume(self) -> Any:
        """`Session`, once `running` again. (Any access wakes a hibernated session too.)"""
        return self._driver.run(self._update(Request("POST", self._path("resume"))))

    def timeline(self) -> Any:
        """`list[TimelineEvent]`, oldest first: restarts, recoveries, OOM kills, ..."""
        return self._driver.run(
            steps.call(
                Request("GET", self._path("timeline")), _list_of(models.TimelineEvent, "events")
            )
        )

    def exec(
        self,
        cmd: Union[str, Sequence[str]],
        *,
        cwd: Optional[str] = None,
        env: Optional[Mapping[str, str]] = None,
        stdin: Optional[str] = None,
        timeout_ms: Optional[int] = None,
    ) -> Any:
        """`ExecResult`: runs `cmd` to its end. A string runs in `sh -c`, a list as it is."""
        body = _command(cmd, cwd, env, stdin, timeout_ms)
        request = Request("POST", self._path("exec"), json=body)
        return self._driver.run(steps.call(request, models.ExecResult.from_json))

    def exec_stream(
        self,
        cmd: Union[str, Sequence[str]],
        *,
        cwd: Optional[str] = None,
        env: Optional[Mapping[str, str]] = None,
        timeout_ms: Optional[int] = None,
        pty: Optional[tuple[int, int]] = None,
    ) -> Any:
        """`ProcessStream`: `cmd`'s output as it is written; closing it kills the process.
        With `pty` (`(cols, rows)`) it runs under a terminal: stderr arrives in stdout."""
        body = _command(cmd, cwd, env, None, timeout_ms, pty=pty)
        return self._driver.run(_process_stream(self._driver, self._path("exec/stream"), body))

    def terminal(
        self,
        *,
        cols: Optional[int] = None,
        rows: Optional[int] = None,
        terminal_id: Optional[str] = None,
        readonly: bool = False,
    ) -> Any:
        """`Terminal`: a new one, or `terminal_id` reattached (its scrollback first)."""
        params = [("cols", str(cols))] if cols else []
        params += [("rows", str(rows))] if rows else []
        params += [("terminal_id", terminal_id)] if terminal_id else []
        params += [("readonly", "true")] if readonly else []
        return self._driver.run(_terminal(self._driver, self._path("terminal"), params))

    def events(self) -> Any:
        """`EventStream` of `SessionEvent`: ports opening and closing (one `port-open` per port
        already listening first), idle warnings."""
        decode = _decode_json(models.SessionEvent.from_json)
        return self._driver.run(_stream(self._driver, self._path("events"), [], decode))

    def ports(self) -> Any:
        """`list[ListeningPort]`: TCP ports something in the session listens on."""
        return self._driver.run(
            steps.call(Request("GET", self._path("ports")), _list_of(models.ListeningPort, "ports"))
        )

    def preview_link(self, port: int, ttl_seconds: Optional[int] = None) -> Any:
        """`PreviewLink`: a signed link to `port` that works without logging in until it
        expires."""
        body: dict[str, Any] = {"port": port}
        if ttl_seconds is not None:
            body["ttl_seconds"] = ttl_seconds
        request = Request("POST", self._path("preview-links"), json=body)
        return self._driver.run(steps.call(request, models.PreviewLink.from_json))


def _terminal(driver: Driver, path: str, params: list[tuple[str, str]]) -> Op[Terminal]:
    socket, terminal_id = yield from _open_terminal(path, params)
    return Terminal(driver, socket, terminal_id)


class Sessions:
    def __init__(self, driver: Driver) -> None:
        self._driver = driver

    def create(
        self,
        template: str = "default",
        *,
        ttl_seconds: Optional[int] = None,
        env: Optional[Mapping[str, str]] = None,
        labels: Optional[Mapping[str, str]] = None,
        from_snapshot: Optional[str] = None,
        queue_timeout: float = 300.0,
        on_queued: Optional[Callable[[models.Queued], None]] = None,
    ) -> Any:
        """`Session`, once it is running.

        When the host is at capacity the request waits in Berth's queue, up to
        `queue_timeout` seconds (then it gives up its place and raises `queue_timeout`);
        `on_queued` hears its place each time it is read.
        """
        body: dict[str, Any] = {"template": template}
        if ttl_seconds is not None:
            body["ttl_seconds"] = ttl_seconds
        if env:
            body["env"] = dict(env)
        if labels:
            body["labels"] = dict(labels)
        if from_snapshot is not None:
            body["from_snapshot"] = from_snapshot
        return self._driver.run(_create(self._driver, body, queue_timeout, on_queued))

    def get(self, session_id: str) -> Any:
        """`Session`."""
        request = Request("GET", steps.session_path(session_id))
        return self._driver.run(_session(self._driver, request))

    def list(self, labels: Optional[Mapping[str, str]] = None, all: bool = False) -> Any:
        """`list[Session]`: yours (every one for the admin); with `all`, ended ones too."""
        params = [("label", f"{key}={value}") for key, value in (labels or {}).items()]
        if all:
            params.append(("all", "true"))
        driver = self._driver

        def parse(data: dict[str, Any]) -> list[Session]:
            return [Session(driver, models.SessionInfo.from_json(s)) for s in data["sessions"]]

        return self._driver.run(steps.call(Request("GET", "/api/v1/sessions", params), parse))


def _session(driver: Driver, request: Request) -> Op[Session]:
    info = yield from steps.call(request, models.SessionInfo.from_json)
    return Session(driver, info)


def _create(
    driver: Driver,
    body: dict[str, Any],
    queue_timeout: float,
    on_queued: Optional[Callable[[models.Queued], None]],
) -> Op[Session]:
    # The server holds a queued request up to `wait` seconds itself; past that, poll.
    wait = str(int(min(max(queue_timeout, 0), 300)))
    deadline = time.monotonic() + queue_timeout
    response = steps.check((yield Request("POST", "/api/v1/sessions", [("wait", wait)], json=body)))
    while response.status == 202:
        queued = models.Queued.from_json(response.json())
        if on_queued is not None:
            on_queued(queued)
        if time.monotonic() >= deadline:
            yield from steps.call_empty(Request("DELETE", f"/api/v1/queue/{_quote(queued.ticket)}"))
            raise BerthError(
                202,
                "queue_timeout",
                f"the host stayed at capacity for {queue_timeout:.0f} s; "
                "the request left the queue",
            )
        yield steps.Sleep(1.0)
        response = steps.check((yield Request("GET", f"/api/v1/queue/{_quote(queued.ticket)}")))
    return Session(driver, models.SessionInfo.from_json(response.json()))


class _Client:
    def __init__(self, driver: Driver) -> None:
        self._driver = driver
        #: Create, find and list sessions.
        self.sessions = Sessions(driver)

    def templates(self) -> Any:
        """`list[Template]`: what sessions can be made of."""
        return self._driver.run(
            steps.call(Request("GET", "/api/v1/templates"), _list_of(models.Template, "templates"))
        )

    def delete_snapshot(self, snapshot_id: str) -> Any:
        path = f"/api/v1/snapshots/{_quote(snapshot_id)}"
        return self._driver.run(steps.call_empty(Request("DELETE", path)))


#: Where `berth serve` listens unless told otherwise.
DEFAULT_URL = "http://127.0.0.1:8080"


def _settings(url: Optional[str], token: Optional[str]) -> tuple[str, str]:
    url = url or os.environ.get("BERTH_URL") or DEFAULT_URL
    token = token or os.environ.get("BERTH_TOKEN")
    if not token:
        raise ValueError(
            "no token: pass token= or set BERTH_TOKEN (`berth user create NAME` prints one; "
            "the admin's is in the data dir's admin-token)"
        )
    return url, token


class Berth(_Client):
    """A blocking client: `Berth("http://127.0.0.1:8080", token)`, or from `BERTH_URL`
    (default `http://127.0.0.1:8080`) and `BERTH_TOKEN`. `timeout` bounds each request and
    each connection opened, in seconds."""

    def __init__(
        self, url: Optional[str] = None, token: Optional[str] = None, *, timeout: float = 120.0
    ) -> None:
        super().__init__(SyncDriver(*_settings(url, token), timeout))

    def close(self) -> None:
        self._driver.close()

    def __enter__(self) -> Berth:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class AsyncBerth(_Client):
    """The asyncio client: the same calls as `Berth`, each awaited; streams take `async for`."""

    def __init__(
        self, url: Optional[str] = None, token: Optional[str] = None, *, timeout: float = 120.0
    ) -> None:
        super().__init__(AsyncDriver(*_settings(url, token), timeout))

    async def close(self) -> None:
        await self._driver.close()

    async def __aenter__(self) -> AsyncBerth:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()
