// One terminal tab: xterm.js on the session's terminal WebSocket. It fits its box, sends
// resizes, and after a dropped connection reattaches to the same terminal, whose scrollback the
// server replays. Read-only, it shows someone else's terminal (an instructor watching a learner).
import { useEffect, useRef, useState } from "preact/hooks";
import { Terminal } from "@xterm/xterm";
import { FitAddon } from "@xterm/addon-fit";
import { api, socketUrl } from "../api";
import { backoff } from "../lib/format";
import type { Theme } from "../app";

const THEMES = {
  dark: { background: "#16181d", foreground: "#d8dee9", cursor: "#d8dee9", selectionBackground: "#3b4252" },
  light: { background: "#fbfbfc", foreground: "#1f2328", cursor: "#1f2328", selectionBackground: "#c8d7f0" },
};

interface Props {
  sessionId: string;
  /** Reattach to this terminal; a new one is opened when unset. */
  terminalId?: string;
  active: boolean;
  theme: Theme;
  onReady: (terminalId: string) => void;
  /** The terminal is gone: its shell exited, or (`missing`) the server no longer has it. */
  onGone: (missing: boolean) => void;
  /** Connect here instead of the session's own terminal route (with `terminalId` in it). */
  url?: string;
  /** Watch only: no keys are sent, nor sizes (the screen's size is its owner's). */
  readonly?: boolean;
}

type Status = "connecting" | "open" | "reconnecting" | "exited";

export function TerminalView({ sessionId, terminalId, active, theme, onReady, onGone, url, readonly = false }: Props) {
  const box = useRef<HTMLDivElement>(null);
  const term = useRef<Terminal | null>(null);
  const fit = useRef<FitAddon | null>(null);
  const [status, setStatus] = useState<Status>("connecting");

  useEffect(() => {
    const xterm = new Terminal({
      fontFamily: "ui-monospace, SFMono-Regular, Menlo, Consolas, monospace",
      fontSize: 13,
      scrollback: 5000,
      theme: THEMES[theme],
      disableStdin: readonly,
    });
    const fitAddon = new FitAddon();
    xterm.loadAddon(fitAddon);
    xterm.open(box.current!);
    term.current = xterm;
    fit.current = fitAddon;
    fitAddon.fit();

    let id = terminalId;
    let socket: WebSocket | null = null;
    let attempt = 0;
    let stopped = false;
    let timer: number | undefined;
    const encoder = new TextEncoder();

    const sendResize = () => {
      if (!readonly && socket?.readyState === WebSocket.OPEN) {
        socket.send(JSON.stringify({ type: "resize", cols: xterm.cols, rows: xterm.rows }));
      }
    };

    const connect = () => {
      const query = new URLSearchParams({ cols: String(xterm.cols), rows: String(xterm.rows) });
      if (id) query.set("terminal_id", id);
      const ws = new WebSocket(url ?? socketUrl(sessionId, "terminal", Object.fromEntries(query)));
      ws.binaryType = "arraybuffer";
      socket = ws;
      let ready = false;
      ws.onmessage = (event) => {
        if (typeof event.data === "string") {
          const message = JSON.parse(event.data);
          if (message.type === "ready") {
            ready = true;
            attempt = 0;
            // The server replays the scrollback next: start from a clean screen.
            if (id) xterm.reset();
            id = message.terminal_id;
            onReady(message.terminal_id);
            setStatus("open");
            sendResize();
          } else if (message.type === "exit") {
            stopped = true;
            setStatus("exited");
            xterm.write(`\r\n\x1b[2m[the shell exited with code ${message.code ?? "?"}]\x1b[0m\r\n`);
            onGone(false);
          }
        } else {
          xterm.write(new Uint8Array(event.data));
        }
      };
      ws.onclose = async () => {
        if (stopped) return;
        if (!ready && id && attempt >= 2 && !(await mayComeBack(sessionId))) {
          // Reattaching keeps failing while Berth and the session are fine: that terminal is gone.
          stopped = true;
          onGone(true);
          return;
        }
        setStatus("reconnecting");
        timer = window.setTimeout(connect, backoff(attempt++));
      };
    };
    connect();

    const input = xterm.onData((data) => {
      if (!readonly && socket?.readyState === WebSocket.OPEN) socket.send(encoder.encode(data));
    });
    const resize = xterm.onResize(sendResize);
    const observer = new ResizeObserver(() => {
      if (box.current?.offsetParent) fitAddon.fit();
    });
    observer.observe(box.current!);

    return () => {
      stopped = true;
      clearTimeout(timer);
      observer.disconnect();
      input.dispose();
      resize.dispose();
      socket?.close();
      xterm.dispose();
    };
    // One connection per mounted tab; the id is only read at mount.
  }, [sessionId]);

  useEffect(() => {
    if (term.current) term.current.options.theme = THEMES[theme];
  }, [theme]);
  useEffect(() => {
    if (active) {
      fit.current?.fit();
      // Nothing to type into a terminal being watched: the page keeps its focus.
      if (!readonly) term.current?.focus();
    }
  }, [active]);

  return (
    <div class={`terminal ${active ? "" : "hidden"}`}>
      {status !== "open" && <div class="terminal-status">{status === "exited" ? "exited" : `${status}…`}</div>}
      <div class="terminal-box" ref={box} />
    </div>
  );
}

/** Whether a terminal that cannot be reattached now may be later: the engine is restarting, or
 *  the session is asleep or waking (its terminals come back with their scrollback). */
async function mayComeBack(sessionId: string): Promise<boolean> {
  try {
    const ready = await fetch("/readyz");
    if (!ready.ok) return true;
    const session = await api.session(sessionId);
    return ["hibernating", "hibernated", "restoring"].includes(session.state);
  } catch {
    return true;
  }
}
