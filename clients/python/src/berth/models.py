"""What the API answers, as typed objects. Field names are the API's (docs: `/openapi.json`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Literal, Optional, TypeVar, Union

__all__ = [
    "ExecResult",
    "Exited",
    "FileEntry",
    "FileEvent",
    "ListeningPort",
    "PreviewLink",
    "ProcessEvent",
    "ProcessInfo",
    "Queued",
    "SessionEvent",
    "SessionInfo",
    "Snapshot",
    "Stderr",
    "Stdout",
    "Template",
    "TerminalEvent",
    "TerminalExit",
    "TerminalOutput",
    "TimelineEvent",
]

A = TypeVar("A", bound="_Answer")


def _time(value: Optional[str]) -> Optional[datetime]:
    if value is None:
        return None
    # The API writes RFC 3339: `Z`, and up to nine digits of fraction. Python before 3.11 reads
    # neither, so: `+00:00`, and the fraction to microseconds (six digits).
    value = value.replace("Z", "+00:00")
    value = re.sub(r"\.(\d+)", lambda m: "." + m.group(1)[:6].ljust(6, "0"), value)
    return datetime.fromisoformat(value)


class _Answer:
    """A dataclass the API answers: built from its JSON by field name, times parsed. Keys it
    does not know are left out (a newer server may add some); absent ones take the default."""

    @classmethod
    def from_json(cls: type[A], data: dict[str, Any]) -> A:
        values = {}
        for known in fields(cls):  # type: ignore[arg-type]
            if known.name in data:
                value = data[known.name]
                values[known.name] = _time(value) if "datetime" in str(known.type) else value
        return cls(**values)


@dataclass(frozen=True)
class SessionInfo(_Answer):
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


@dataclass(frozen=True)
class ExecResult(_Answer):
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


@dataclass(frozen=True)
class FileEntry(_Answer):
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


@dataclass(frozen=True)
class FileEvent(_Answer):
    """A change under a watched directory."""

    #: `created`, `modified` or `removed`.
    change: str
    path: str
    #: `file`, `dir` or `other`: what the path was when it changed.
    type: str = "file"


@dataclass(frozen=True)
class ProcessInfo(_Answer):
    """A background process, as `Processes.list()` shows it."""

    #: Attach, write stdin and signal with this id.
    id: str
    pid: int
    cmd: list[str]
    running: bool
    keepalive: bool = False
    #: Started with `pty`: it runs under a terminal.
    pty: bool = False
    exit_code: Optional[int] = None
    signal: Optional[int] = None


@dataclass(frozen=True)
class Snapshot(_Answer):
    id: str
    session_id: str
    owner: str
    name: str
    created_at: datetime
    #: The disk it costs above its template's image; `None` when the engine cannot tell.
    size_bytes: Optional[int] = None
    #: How long the session was paused while its files were copied (its creation only).
    pause_ms: Optional[int] = None


@dataclass(frozen=True)
class TimelineEvent(_Answer):
    """Something that happened to a session that its user should know."""

    at: datetime
    #: `restarted`, `failed`, `oom`, `recovered`, `hibernate_failed`, `compacted`, ...
    kind: str
    message: str


@dataclass(frozen=True)
class Template(_Answer):
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
class SessionEvent(_Answer):
    """A frame of a session's event stream."""

    #: `port-open`, `port-closed`, `idle-warning` or `idle-cancelled`.
    type: Literal["port-open", "port-closed", "idle-warning", "idle-cancelled"]
    port: Optional[int] = None
    #: With `idle-warning`: when the session sleeps unless someone works in it.
    at: Optional[datetime] = None


@dataclass(frozen=True)
class Queued(_Answer):
    """A create waiting for capacity: the host is full and the request is in Berth's queue."""

    ticket: str
    #: 1 for the next request to be admitted.
    position: Optional[int] = None
    #: A rough estimate from how often sessions have been ending lately.
    estimated_wait_seconds: Optional[int] = None


@dataclass(frozen=True)
class ListeningPort(_Answer):
    """A TCP port something in the session listens on."""

    port: int
    #: Where its owner opens it through Berth, relative to Berth's URL.
    preview_path: Optional[str] = None


@dataclass(frozen=True)
class PreviewLink(_Answer):
    """A signed link to one port of a session that works without logging in until it expires."""

    #: Relative to Berth's URL.
    path: str
    expires_at: datetime
    #: Host-based, when Berth has a preview domain.
    url: Optional[str] = None
