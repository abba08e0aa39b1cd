import { describe, expect, it } from "vitest";
import { Berth, BerthError } from "../src/index";

/** A WebSocket that opens at once, says `frames`, and keeps what is sent to it. */
function fakeSocket(frames: (string | Uint8Array)[]) {
  const opened: FakeSocket[] = [];
  class FakeSocket {
    binaryType = "blob";
    sent: unknown[] = [];
    closed = false;
    onopen: (() => void) | null = null;
    onmessage: ((m: { data: unknown }) => void) | null = null;
    onclose: (() => void) | null = null;
    onerror: (() => void) | null = null;
    constructor(readonly url: string) {
      opened.push(this);
      queueMicrotask(() => {
        // The first frames arrive with the handshake's answer, before `open` is handled.
        for (const frame of frames) {
          this.onmessage?.({ data: typeof frame === "string" ? frame : frame.buffer.slice(0) });
        }
        this.onopen?.();
      });
    }
    send(data: unknown) {
      this.sent.push(data);
    }
    close() {
      this.closed = true;
      this.onclose?.();
    }
  }
  return { FakeSocket, opened };
}

function berth(WebSocket: unknown, answers: Record<string, unknown> = {}) {
  return new Berth({
    baseUrl: "http://berth.test:8080",
    token: "t0ken",
    WebSocket: WebSocket as never,
    fetch: async (request: Request) => {
      const path = new URL(request.url).pathname;
      if (path in answers) return new Response(JSON.stringify(answers[path]), { status: 201 });
      return new Response(JSON.stringify({ error: { code: "not_found", message: `no ${path}` } }), { status: 404 });
    },
  });
}

describe("process streams", () => {
  it("start, relay output sent before anyone listened, take input, and end with the exit", async () => {
    const output = new Uint8Array([1, ...new TextEncoder().encode("hello")]);
    const { FakeSocket, opened } = fakeSocket([
      JSON.stringify({ type: "start", id: "p1", pid: 42, pty: true }),
      output,
      JSON.stringify({ type: "end", exit_code: 3, signal: null, timed_out: false }),
    ]);
    const client = berth(FakeSocket, { "/api/v1/sessions/s1/tickets": { ticket: "tk", expires_in_seconds: 30 } });
    const stream = await client.attach("s1", "p1");
    expect([stream.id, stream.pid, stream.pty]).toEqual(["p1", 42, true]);
    const seen: string[] = [];
    stream.onOutput((bytes, which) => seen.push(`${which}:${new TextDecoder().decode(bytes)}`));
    expect(seen).toEqual(["stdout:hello"]);
    expect(await stream.exit).toEqual({ exitCode: 3, signal: null, timedOut: false });
    // Authenticated by a single-use ticket, as a browser must be.
    expect(opened[0].url).toBe("ws://berth.test:8080/api/v1/sessions/s1/processes/p1/attach?ticket=tk");
    stream.resize(100, 30);
    stream.signal(15);
    expect(opened[0].sent.map(String)).toEqual([
      JSON.stringify({ type: "resize", cols: 100, rows: 30 }),
      JSON.stringify({ type: "signal", signal: 15 }),
    ]);
  });

  it("fail when the stream closes before the process ends", async () => {
    const { FakeSocket, opened } = fakeSocket([JSON.stringify({ type: "start", id: "p1", pid: 1 })]);
    const client = berth(FakeSocket, { "/api/v1/sessions/s1/tickets": { ticket: "tk", expires_in_seconds: 30 } });
    const stream = await client.attach("s1", "p1");
    opened[0].close();
    await expect(stream.exit).rejects.toMatchObject({ code: "network" });
  });
});

describe("terminals", () => {
  it("say their id, relay output, take keys and sizes, and report the shell's exit", async () => {
    const { FakeSocket, opened } = fakeSocket([
      JSON.stringify({ type: "ready", terminal_id: "t1" }),
      new TextEncoder().encode("$ "),
      JSON.stringify({ type: "exit", code: 0 }),
    ]);
    const client = berth(FakeSocket, { "/api/v1/sessions/s1/tickets": { ticket: "tk", expires_in_seconds: 30 } });
    const terminal = await client.terminal("s1", { cols: 100, rows: 30, terminalId: "t0", cwd: "/tmp" });
    expect(await terminal.ready).toBe("t1");
    const seen: string[] = [];
    terminal.onOutput((bytes) => seen.push(new TextDecoder().decode(bytes)));
    expect(seen).toEqual(["$ "]);
    expect(await terminal.exit).toBe(0);
    expect(opened[0].url).toBe(
      "ws://berth.test:8080/api/v1/sessions/s1/terminal?cols=100&rows=30&terminal_id=t0&cwd=%2Ftmp&ticket=tk",
    );
    terminal.write("ls\r");
    terminal.resize(120, 40);
    expect(new TextDecoder().decode(opened[0].sent[0] as Uint8Array)).toBe("ls\r");
    expect(opened[0].sent[1]).toBe(JSON.stringify({ type: "resize", cols: 120, rows: 40 }));
  });
});

describe("errors", () => {
  it("carry Berth's code and message", async () => {
    const client = berth(undefined);
    const err = await client.getSession("nope").catch((e) => e);
    expect(err).toBeInstanceOf(BerthError);
    expect([err.status, err.code, err.message]).toEqual([404, "not_found", "no /api/v1/sessions/nope"]);
  });
  it("say when there is no WebSocket to open one with (Node 20 without `ws`)", async () => {
    const global = globalThis as { WebSocket?: unknown };
    const saved = global.WebSocket;
    global.WebSocket = undefined;
    try {
      const client = new Berth({ baseUrl: "http://berth.test", fetch: async () => new Response("{}") });
      await expect(client.socket("s1", "events")).rejects.toThrow(/no WebSocket here/);
    } finally {
      global.WebSocket = saved;
    }
  });
});
