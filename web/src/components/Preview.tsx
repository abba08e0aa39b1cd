// The ports servers in the session listen on, as they open and close, and the chosen one in
// an iframe. The iframe loads a signed preview link, which the proxy serves sandboxed (an
// opaque origin), so the session's pages cannot act as the logged-in user.
import { useEffect, useState } from "preact/hooks";
import { api, socketUrl } from "../api";
import { backoff } from "../lib/format";
import { applyPortEvent, parsePortEvent } from "../lib/ports";
import { toastError } from "../toasts";

export function Preview({ sessionId }: { sessionId: string }) {
  const [ports, setPorts] = useState<number[]>([]);
  const [chosen, setChosen] = useState<number | null>(null);
  const [link, setLink] = useState<string | null>(null);
  const [reloads, setReloads] = useState(0);

  useEffect(() => {
    let socket: WebSocket | null = null;
    let attempt = 0;
    let stopped = false;
    let timer: number | undefined;
    const connect = () => {
      setPorts([]);
      socket = new WebSocket(socketUrl(sessionId, "events"));
      socket.onopen = () => (attempt = 0);
      socket.onmessage = (message) => {
        const event = parsePortEvent(String(message.data));
        if (event) setPorts((p) => applyPortEvent(p, event));
      };
      socket.onclose = () => {
        if (!stopped) timer = window.setTimeout(connect, backoff(attempt++));
      };
    };
    connect();
    return () => {
      stopped = true;
      clearTimeout(timer);
      socket?.close();
    };
  }, [sessionId]);

  // The first port to open is shown; a closed one stays chosen, so it comes back when restarted.
  useEffect(() => {
    if (chosen === null && ports.length) setChosen(ports[0]);
  }, [ports]);

  useEffect(() => {
    if (chosen === null) return;
    setLink(null);
    api.previewLink(sessionId, chosen).then(
      (l) => setLink(l.path),
      (err) => toastError(`No preview link for port ${chosen}`, err),
    );
  }, [chosen]);

  const open = chosen !== null && ports.includes(chosen);
  return (
    <div class="preview">
      <div class="pane-header">
        <span>Preview</span>
        <span class="spacer" />
        {ports.map((port) => (
          <button key={port} class={`chip ${port === chosen ? "active" : ""}`} onClick={() => setChosen(port)}>
            :{port}
          </button>
        ))}
        {link && (
          <>
            <button title="Reload" onClick={() => setReloads((n) => n + 1)}>
              ⟳
            </button>
            <a class="button" href={link} target="_blank" rel="noopener" title="Open in a new tab">
              ↗
            </a>
          </>
        )}
      </div>
      {chosen !== null && link ? (
        <>
          {!open && <p class="notice">Port {chosen} is closed now; the page below may be stale.</p>}
          <iframe key={`${link}#${reloads}`} class="preview-frame" src={link} title={`Port ${chosen}`} />
        </>
      ) : (
        <p class="muted hint">
          Servers you start appear here as they listen, for example <code>python3 -m http.server 8000</code>.
        </p>
      )}
    </div>
  );
}
