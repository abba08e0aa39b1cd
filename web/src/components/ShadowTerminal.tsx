// A learner's terminal as their instructor watches it: the live terminals of their session to
// pick from (listed again every 5 s, as they open and close them), the picked one read-only.
import { useEffect, useRef, useState } from "preact/hooks";
import { api, shadowTerminalUrl, type TerminalTail } from "../api";
import { lastLine } from "../lib/classes";
import type { Theme } from "../app";
import { TerminalView } from "./Terminal";

interface Props {
  classId: string;
  user: string;
  /** The session of their newest attempt, or null once it has ended. */
  sessionId: string | null;
  theme: Theme;
  onClose: () => void;
}

export function ShadowTerminal({ classId, user, sessionId, theme, onClose }: Props) {
  const panel = useRef<HTMLDivElement>(null);
  const [tails, setTails] = useState<TerminalTail[] | null>(null);
  const [failure, setFailure] = useState<string | null>(null);
  const [picked, setPicked] = useState<string | null>(null);
  // A shell that exited is listed again at once rather than at the next poll.
  const [relists, setRelists] = useState(0);

  useEffect(() => {
    panel.current?.scrollIntoView({ block: "nearest", behavior: "smooth" });
  }, []);

  useEffect(() => {
    if (!sessionId) return;
    let stopped = false;
    let timer: number | undefined;
    const list = async () => {
      try {
        const fresh = await api.learnerTerminals(classId, sessionId);
        if (stopped) return;
        setTails(fresh);
        setFailure(null);
      } catch (err) {
        if (stopped) return;
        setFailure(err instanceof Error ? err.message : String(err));
      }
      timer = window.setTimeout(list, 5000);
    };
    list();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, [classId, sessionId, relists]);

  const shown = tails?.find((t) => t.terminal_id === picked) ?? tails?.[0];
  const pickClosed = picked !== null && tails !== null && !tails.some((t) => t.terminal_id === picked);

  return (
    <div class="card shadow-terminal" ref={panel} data-learner={user} data-session={sessionId ?? undefined}>
      <div class="shadow-head">
        <h2>{user}'s terminal</h2>
        <span class="spacer" />
        <button onClick={onClose}>Stop watching</button>
      </div>
      <p class="notice readonly-banner">Read-only: you are watching {user}'s terminal</p>
      {!sessionId ? (
        <p class="muted">
          {user}'s session has ended: there is no terminal to watch. Start the lab for them again to follow them.
        </p>
      ) : (
        <>
          {failure && (
            <p class="notice">
              Could not list {user}'s terminals: {failure}. Trying again every 5 s.
            </p>
          )}
          {tails === null ? (
            !failure && <p class="muted">Looking for {user}'s terminals…</p>
          ) : !shown ? (
            <p class="muted">{user} has no terminal open. It shows here as soon as they open one.</p>
          ) : (
            <>
              <div class="tabs shadow-picker">
                {tails.map((t) => (
                  <button
                    key={t.terminal_id}
                    class={`tab ${t.terminal_id === shown.terminal_id ? "active" : "ghost"}`}
                    data-terminal={t.terminal_id}
                    onClick={() => setPicked(t.terminal_id)}
                  >
                    {t.terminal_id}
                    <span class="muted">{lastLine(t.text) || "nothing on screen yet"}</span>
                  </button>
                ))}
              </div>
              {pickClosed && <p class="muted">The terminal you picked has closed; this is {shown.terminal_id}.</p>}
              <div class="shadow-screen">
                <TerminalView
                  key={`${sessionId}:${shown.terminal_id}`}
                  sessionId={sessionId}
                  terminalId={shown.terminal_id}
                  url={shadowTerminalUrl(classId, sessionId, shown.terminal_id)}
                  readonly
                  active
                  theme={theme}
                  // Its id is the one picked: nothing to learn from `ready`.
                  onReady={() => {}}
                  onGone={() => setRelists((n) => n + 1)}
                />
              </div>
            </>
          )}
        </>
      )}
    </div>
  );
}
