"""The client against a real `berth serve` and real sessions: `BERTH_URL` and `BERTH_TOKEN` name
it (crates/berth-server/tests/python_client.rs starts one with templates `default`, a tiny
busybox image, and `base`, Debian with python3)."""

from __future__ import annotations

import asyncio
import io
import tarfile
import time
import uuid

import httpx
import pytest

from berth import (
    AsyncBerth,
    Berth,
    BerthConnectionError,
    BerthError,
    Exited,
    Stderr,
    Stdout,
    TerminalExit,
    TerminalOutput,
)


@pytest.fixture(scope="module")
def berth():
    with Berth() as client:
        yield client


@pytest.fixture(scope="module")
def session(berth):
    session = berth.sessions.create("base", labels={"suite": "python-client"})
    yield session
    session.delete()


def test_a_created_session_runs_commands_with_their_exit_codes_and_streams_apart(session):
    assert session.state == "running"
    result = session.exec("echo out; echo err >&2; exit 3")
    assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")
    result = session.exec(["cat"], stdin="piped")
    assert result.stdout == "piped"
    result = session.exec("pwd; echo $GREETING", cwd="/tmp", env={"GREETING": "hello"})
    assert result.stdout == "/tmp\nhello\n"
    slow = session.exec("sleep 5", timeout_ms=200)
    assert slow.timed_out and slow.exit_code is None


def test_files_are_written_read_listed_moved_and_removed(session):
    entry = session.files.write("/home/user/py/notes.txt", "hello from python")
    assert (entry.name, entry.size, entry.type) == ("notes.txt", 17, "file")
    assert session.files.read_text("/home/user/py/notes.txt") == "hello from python"
    session.files.write("/home/user/py/data.bin", bytes(range(256)))
    assert session.files.read("/home/user/py/data.bin") == bytes(range(256))
    names = sorted(e.name for e in session.files.list("/home/user/py"))
    assert names == ["data.bin", "notes.txt"]
    moved = session.files.move("/home/user/py/notes.txt", "/home/user/py/kept.txt")
    assert moved.path == "/home/user/py/kept.txt"
    assert session.files.exists("/home/user/py/kept.txt")
    assert not session.files.exists("/home/user/py/notes.txt")
    with pytest.raises(BerthError) as refused:
        session.files.move("/home/user/py/kept.txt", "/home/user/py/data.bin")
    assert refused.value.code == "conflict"
    session.files.move("/home/user/py/kept.txt", "/home/user/py/data.bin", overwrite=True)
    assert session.files.read_text("/home/user/py/data.bin") == "hello from python"
    assert session.files.mkdir("/home/user/py/a/b").type == "dir"
    session.files.remove("/home/user/py", recursive=True)
    assert not session.files.exists("/home/user/py")


def test_archives_go_in_and_out_as_tar(session):
    packed = io.BytesIO()
    with tarfile.open(fileobj=packed, mode="w") as tar:
        script = b"#!/bin/sh\necho run\n"
        info = tarfile.TarInfo("bin/run.sh")
        info.size, info.mode = len(script), 0o755
        tar.addfile(info, io.BytesIO(script))
    session.files.upload_archive("/home/user/unpacked", packed.getvalue())
    assert session.exec("/home/user/unpacked/bin/run.sh").stdout == "run\n"
    with tarfile.open(
        fileobj=io.BytesIO(session.files.download_archive("/home/user/unpacked"))
    ) as tar:
        assert any(name.endswith("bin/run.sh") for name in tar.getnames())


def test_a_streamed_command_sends_its_output_as_written_and_its_end(session):
    with session.exec_stream("cat; echo done >&2; exit 4") as stream:
        assert stream.id and stream.pid > 0
        stream.write_stdin("typed\n")
        stream.close_stdin()
        events = list(stream)
    assert b"".join(e.data for e in events if isinstance(e, Stdout)) == b"typed\n"
    assert b"".join(e.data for e in events if isinstance(e, Stderr)) == b"done\n"
    assert events[-1] == Exited(exit_code=4, signal=None, timed_out=False)


def test_a_process_under_a_pty_sees_a_terminal_that_resizes(session):
    with session.exec_stream("stty size; read line; stty size; exit 3", pty=(100, 30)) as stream:
        seen = b""
        for event in stream:
            seen += event.data if isinstance(event, Stdout) else b""
            if b"30 100" in seen:
                break
        stream.resize(120, 40)
        stream.write_stdin("go\n")
        events = list(stream)
    seen += b"".join(e.data for e in events if isinstance(e, Stdout))
    assert b"40 120" in seen, seen
    assert not any(isinstance(e, Stderr) for e in events), "a terminal is one stream"
    assert events[-1] == Exited(exit_code=3, signal=None, timed_out=False)

    process = session.processes.start("sleep 30", pty=(80, 24))
    assert process.pty
    session.processes.resize(process.id, 90, 20)
    session.processes.signal(process.id, 9)


def test_a_background_process_is_listed_attached_fed_and_signalled(session):
    process = session.processes.start("cat", keepalive=True)
    assert process.running
    assert any(p.id == process.id for p in session.processes.list())
    session.processes.write_stdin(process.id, "first line\n")
    with session.processes.attach(process.id) as attached:
        received = b""
        for event in attached:
            if isinstance(event, Stdout):
                received += event.data
            if b"first line\n" in received:
                break
    session.processes.signal(process.id, 15)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        listed = {p.id: p for p in session.processes.list()}
        if not listed[process.id].running:
            break
        time.sleep(0.1)
    assert listed[process.id].signal == 15


def test_a_terminal_runs_the_shell_and_can_be_reattached(session):
    with session.terminal(cols=100, rows=30) as terminal:
        terminal.send("echo $((6 * 7))\n")
        seen = b""
        for event in terminal:
            assert isinstance(event, TerminalOutput)
            seen += event.data
            if b"42" in seen:
                break
        terminal.resize(120, 40)
        kept = terminal.id
    with session.terminal(terminal_id=kept) as again:
        assert again.id == kept
        again.send("exit\n")
        assert any(isinstance(event, TerminalExit) for event in again)


def test_watched_files_and_opened_ports_arrive_as_events(session):
    session.files.mkdir("/home/user/watched")
    with session.files.watch("/home/user/watched") as watch:
        session.files.write("/home/user/watched/new.txt", "x")
        event = next(iter(watch))
    assert (event.change, event.path, event.type) == (
        "created",
        "/home/user/watched/new.txt",
        "file",
    )

    server = session.processes.start("python3 -m http.server 8123 --bind 0.0.0.0")
    with session.events() as events:
        opened = next(e for e in events if e.type == "port-open" and e.port == 8123)
    assert opened.port == 8123
    assert any(p.port == 8123 for p in session.ports())
    link = session.preview_link(8123, ttl_seconds=60)
    page = httpx.get(berth_url() + link.path, follow_redirects=True)
    assert page.status_code == 200 and "Directory listing" in page.text
    session.processes.signal(server.id, 9)


def test_sessions_are_found_by_label_extended_and_read_again(berth, session):
    found = berth.sessions.list(labels={"suite": "python-client"})
    assert [s.id for s in found] == [session.id]
    before = session.info.expires_at
    assert session.extend(3600).info.expires_at > before
    assert berth.sessions.get(session.id).info.expires_at == session.info.expires_at
    assert "base" in [t.name for t in berth.templates()]


def test_a_hibernated_session_wakes_with_its_files(berth):
    session = berth.sessions.create("base")
    try:
        session.files.write("/home/user/kept.txt", "still here")
        assert session.hibernate().state == "hibernated"
        assert session.info.stop_reason == "requested"
        assert session.resume().state == "running"
        assert session.files.read_text("/home/user/kept.txt") == "still here"
    finally:
        session.delete()


def test_a_snapshot_forks_a_new_session(berth, session):
    session.files.write("/home/user/forked.txt", "from the snapshot")
    name = f"py-{uuid.uuid4().hex[:8]}"
    snapshot = session.snapshots.create(name)
    assert snapshot.name == name and snapshot.session_id == session.id
    assert snapshot.id in [s.id for s in session.snapshots.list()]
    fork = berth.sessions.create("base", from_snapshot=snapshot.id)
    try:
        assert fork.files.read_text("/home/user/forked.txt") == "from the snapshot"
    finally:
        fork.delete()
        berth.delete_snapshot(snapshot.id)
    assert snapshot.id not in [s.id for s in session.snapshots.list()]


def test_errors_carry_berths_codes(berth):
    with pytest.raises(BerthError) as missing:
        berth.sessions.get("szzzzzzzzzzzz")
    assert (missing.value.status, missing.value.code) == (404, "not_found")
    with pytest.raises(BerthError) as unknown:
        berth.sessions.create("no-such-template")
    assert (unknown.value.status, unknown.value.code) == (422, "unknown_template")
    with Berth(token="not-a-token") as stranger:
        with pytest.raises(BerthError) as refused:
            stranger.sessions.list()
    assert refused.value.code == "unauthorized"
    with Berth("http://127.0.0.1:9", token="t", timeout=2) as nowhere:
        with pytest.raises(BerthConnectionError):
            nowhere.templates()


def test_a_deleted_session_is_gone_and_its_websockets_refuse_with_json_errors(berth):
    session = berth.sessions.create()
    session.delete()
    assert berth.sessions.get(session.id).state in ("stopping", "stopped")
    with pytest.raises(BerthError) as refused:
        session.terminal()
    assert refused.value.status in (404, 409)


def test_the_asyncio_client_does_the_same():
    async def scenario():
        async with AsyncBerth() as berth:
            session = await berth.sessions.create()
            try:
                result = await session.exec("echo async")
                assert result.stdout == "async\n"
                await session.files.write("/home/user/a.txt", "written")
                assert await session.files.read_text("/home/user/a.txt") == "written"
                stream = await session.exec_stream("echo streamed; exit 2")
                async with stream:
                    events = [event async for event in stream]
                assert events[0] == Stdout(b"streamed\n")
                assert events[-1] == Exited(exit_code=2, signal=None, timed_out=False)
                terminal = await session.terminal()
                async with terminal:
                    await terminal.send("echo $((40 + 2))\n")
                    seen = b""
                    async for event in terminal:
                        seen += event.data
                        if b"42" in seen:
                            break
                sessions = await berth.sessions.list()
                assert session.id in [s.id for s in sessions]
            finally:
                await session.delete()
            with pytest.raises(BerthError) as missing:
                await berth.sessions.get("szzzzzzzzzzzz")
            assert missing.value.code == "not_found"

    asyncio.run(scenario())


def berth_url() -> str:
    import os

    return os.environ["BERTH_URL"].rstrip("/")


def test_error_bodies_become_errors_with_their_codes_and_retry_after():
    from berth._steps import error_of

    limited = error_of(
        429,
        "application/json",
        b'{"error":{"code":"rate_limited","message":"slow down","retry_after":2}}',
    )
    assert (limited.status, limited.code, limited.message, limited.retry_after) == (
        429,
        "rate_limited",
        "slow down",
        2,
    )
    proxied = error_of(502, "text/html", b"<h1>Bad Gateway</h1>")
    assert (proxied.status, proxied.code, proxied.retry_after) == (502, "unknown", None)
    assert "HTTP 502" in proxied.message
