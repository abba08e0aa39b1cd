"""Berth's Python client: isolated per-user container sessions on Docker.

    from berth import Berth

    with Berth() as berth:                      # BERTH_URL and BERTH_TOKEN
        session = berth.sessions.create()
        print(session.exec("echo hi").stdout)
        session.files.write("notes.txt", "hello")
        session.delete()

`AsyncBerth` is the same API for asyncio: await each call, `async for` each stream.
"""

from .client import (
    DEFAULT_URL,
    AsyncBerth,
    Berth,
    EventStream,
    Files,
    Processes,
    ProcessStream,
    Session,
    Sessions,
    Snapshots,
    Terminal,
)
from .errors import BerthConnectionError, BerthError
from .models import (
    ExecResult,
    Exited,
    FileEntry,
    FileEvent,
    ListeningPort,
    PreviewLink,
    ProcessEvent,
    ProcessInfo,
    Queued,
    SessionEvent,
    SessionInfo,
    Snapshot,
    Stderr,
    Stdout,
    Template,
    TerminalEvent,
    TerminalExit,
    TerminalOutput,
    TimelineEvent,
)

__all__ = [
    "DEFAULT_URL",
    "AsyncBerth",
    "Berth",
    "BerthConnectionError",
    "BerthError",
    "EventStream",
    "ExecResult",
    "Exited",
    "FileEntry",
    "FileEvent",
    "Files",
    "ListeningPort",
    "PreviewLink",
    "ProcessEvent",
    "ProcessInfo",
    "ProcessStream",
    "Processes",
    "Queued",
    "Session",
    "SessionEvent",
    "SessionInfo",
    "Sessions",
    "Snapshot",
    "Snapshots",
    "Stderr",
    "Stdout",
    "Template",
    "TerminalEvent",
    "TerminalExit",
    "TerminalOutput",
    "TimelineEvent",
    "Terminal",
]
