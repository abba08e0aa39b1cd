// Error and status messages that say what happened, stacked in a corner for a few seconds.
import { useEffect, useState } from "preact/hooks";
import { ApiError } from "./api";

export type ToastKind = "error" | "info";
interface Toast {
  id: number;
  kind: ToastKind;
  text: string;
}

let next = 1;
const listeners = new Set<(toasts: Toast[]) => void>();
let current: Toast[] = [];

function publish(toasts: Toast[]) {
  current = toasts;
  listeners.forEach((listener) => listener(current));
}

export function toast(text: string, kind: ToastKind = "info") {
  const id = next++;
  publish([...current, { id, kind, text }]);
  setTimeout(() => publish(current.filter((t) => t.id !== id)), kind === "error" ? 8000 : 3000);
}

/** Shows what went wrong, in words: the API's message when there is one. */
export function toastError(what: string, err: unknown) {
  const message = err instanceof ApiError || err instanceof Error ? err.message : String(err);
  toast(`${what}: ${message}`, "error");
}

export function Toasts() {
  const [toasts, setToasts] = useState<Toast[]>(current);
  useEffect(() => {
    listeners.add(setToasts);
    return () => void listeners.delete(setToasts);
  }, []);
  return (
    <div class="toasts" role="status" aria-live="polite">
      {toasts.map((t) => (
        <div key={t.id} class={`toast toast-${t.kind}`} onClick={() => publish(current.filter((x) => x.id !== t.id))}>
          {t.text}
        </div>
      ))}
    </div>
  );
}
