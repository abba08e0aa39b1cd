"""What the API answers, as typed objects. Field names are the API's (docs: `/openapi.json`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Optional, Union


def _time(value: Optional[str]) -> Optional[datetime]:
    if value is None:
        return None
    # The API writes RFC 3339 with a `Z`; fromisoformat reads `+00:00` on every Python.
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass(frozen=True)
class SessionInfo:
    """A session as the API shows it at one moment; `Session.refresh()` reads it again."""

    id: str
    owner: str
    template: str
    #: `creating`, `running`, `hibernating`, `hibernated`, `restoring`, `stopping`, `stopped`
    #: or `failed`.
    state: str
    labels: dict[str, str]
    created_at: datetime
    expires_at: datetime
    last_activity: datetime
    #: Why it stopped, failed or hibernated: `deleted`, `ttl_expired`, `idle`, `node_lost`, ...
    stop_reason: Optional[str] = None
    hibernated_at: Optional[datetime] = None
    keepalive_until: Optional[datetime] = None
    wake_estimate_ms: Optional[int] = None
    wake_queue_position: Optional[int] = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SessionInfo:
        return cls(
            id=data["id"],
            owner=data["owner"],
            template=data["template"],
            state=data["state"],
            labels=dict(data.get("labels", {})),
            created_at=_time(data["created_at"]),
            expires_at=_time(data["expires_at"]),
            last_activity=_time(data["last_activity"]),
            stop_reason=data.get("stop_reason"),
            hibernated_at=_time(data.get("hibernated_at")),
            keepalive_until=_time(data.get("keepalive_until")),
            wake_estimate_ms=data.get("wake_estimate_ms"),
            wake_queue_position=data.get("wake_queue_position"),
        )


@dataclass(frozen=True)
class ExecResult:
    """A command run to its end."""

    #: `None` when a signal ended it (see `signal`).
    exit_code: Optional[int]
    stdout: str
    stderr: str
    #: Output past 1 MiB per stream was dropped.
    truncated: bool
    timed_out: bool
    duration_ms: int
    signal: Optional[int] = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExecResult:
        return cls(
            exit_code=data.get("exit_code"),
            stdout=data["stdout"],
            stderr=data["stderr"],
            truncated=data["truncated"],
            timed_out=data["timed_out"],
            duration_ms=data["duration_ms"],
            signal=data.get("signal"),
        )


@dataclass(frozen=True)
class FileEntry:
    name: str
    #: Absolute path in the session.
    path: str
    #: `file`, `dir`, `symlink` or `other`.
    type: str
    size: int
    #: Permission bits, e.g. `0o644`.
    mode: int
    mtime: datetime
    #: Where a symlink points.
    target: Optional[str] = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FileEntry:
        return cls(
            name=data["name"],
            path=data["path"],
            type=data["type"],
            size=data["size"],
            mode=data["mode"],
            mtime=_time(data["mtime"]),
            target=data.get("target"),
        )


@dataclass(frozen=True)
class FileEvent:
    """A change under a watched directory."""

    #: `created`, `modified` or `removed`.
    change: str
    path: str

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FileEvent:
        return cls(change=data["change"], path=data["path"])


@dataclass(frozen=True)
class ProcessInfo:
    """A background process, as `Processes.list()` shows it."""

    #: Attach, write stdin and signal with this id.
    id: str
    pid: int
    cmd: list[str]
    running: bool
    keepalive: bool = False
    exit_code: Optional[int] = None
    signal: Optional[int] = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProcessInfo:
        return cls(
            id=data["id"],
            pid=data["pid"],
            cmd=list(data["cmd"]),
            running=data["running"],
            keepalive=data.get("keepalive", False),
            exit_code=data.get("exit_code"),
            signal=data.get("signal"),
        )


@dataclass(frozen=True)
class Snapshot:
    id: str
    session_id: str
    owner: str
    name: str
    created_at: datetime
    #: The disk it costs above its template's image; `None` when the engine cannot tell.
    size_bytes: Optional[int] = None
    #: How long the session was paused while its files were copied (its creation only).
    pause_ms: Optional[int] = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Snapshot:
        return cls(
            id=data["id"],
            session_id=data["session_id"],
            owner=data["owner"],
            name=data["name"],
            created_at=_time(data["created_at"]),
            size_bytes=data.get("size_bytes"),
            pause_ms=data.get("pause_ms"),
        )


@dataclass(frozen=True)
class TimelineEvent:
    """Something that happened to a session that its user should know."""

    at: datetime
    #: `restarted`, `failed`, `oom`, `recovered`, `hibernate_failed`, `compacted`, ...
    kind: str
    message: str

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TimelineEvent:
        return cls(at=_time(data["at"]), kind=data["kind"], message=data["message"])


@dataclass(frozen=True)
class Template:
    """What sessions can be made of."""

    name: str
    image: str
    memory_mb: int
    cpus: float
    pids: int
    ttl_seconds: int
    max_ttl_seconds: int
    env: dict[str, str]
    #: `{"egress": "open" | "allow" | "none", "allow": [...]}`
    network: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Template:
        return cls(
            name=data["name"],
            image=data["image"],
            memory_mb=data["memory_mb"],
            cpus=data["cpus"],
            pids=data["pids"],
            ttl_seconds=data["ttl_seconds"],
            max_ttl_seconds=data["max_ttl_seconds"],
            env=dict(data.get("env", {})),
            network=dict(data.get("network", {})),
        )


@dataclass(frozen=True)
class Stdout:
    data: bytes


@dataclass(frozen=True)
class Stderr:
    data: bytes


@dataclass(frozen=True)
class Exited:
    """A streamed process ended: the last event of its stream."""

    exit_code: Optional[int]
    signal: Optional[int]
    timed_out: bool


#: What a process stream yields.
ProcessEvent = Union[Stdout, Stderr, Exited]


@dataclass(frozen=True)
class TerminalOutput:
    data: bytes


@dataclass(frozen=True)
class TerminalExit:
    """The terminal's shell ended; nothing follows."""

    code: Optional[int]


#: What a terminal yields.
TerminalEvent = Union[TerminalOutput, TerminalExit]


@dataclass(frozen=True)
class SessionEvent:
    """A frame of a session's event stream."""

    #: `port-open`, `port-closed`, `idle-warning` or `idle-cancelled`.
    type: Literal["port-open", "port-closed", "idle-warning", "idle-cancelled"]
    port: Optional[int] = None
    #: With `idle-warning`: when the session sleeps unless someone works in it.
    at: Optional[datetime] = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SessionEvent:
        return cls(type=data["type"], port=data.get("port"), at=_time(data.get("at")))


@dataclass(frozen=True)
class Queued:
    """A create waiting for capacity: the host is full and the request is in Berth's queue."""

    ticket: str
    #: 1 for the next request to be admitted.
    position: Optional[int] = None
    #: A rough estimate from how often sessions have been ending lately.
    estimated_wait_seconds: Optional[int] = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Queued:
        return cls(
            ticket=data["ticket"],
            position=data.get("position"),
            estimated_wait_seconds=data.get("estimated_wait_seconds"),
        )


@dataclass(frozen=True)
class ListeningPort:
    """A TCP port something in the session listens on."""

    port: int
    #: Where its owner opens it through Berth, relative to Berth's URL.
    preview_path: Optional[str] = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ListeningPort:
        return cls(port=data["port"], preview_path=data.get("preview_path"))


@dataclass(frozen=True)
class PreviewLink:
    """A signed link to one port of a session that works without logging in until it expires."""

    #: Relative to Berth's URL.
    path: str
    expires_at: datetime
    #: Host-based, when Berth has a preview domain.
    url: Optional[str] = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PreviewLink:
        return cls(path=data["path"], expires_at=_time(data["expires_at"]), url=data.get("url"))
