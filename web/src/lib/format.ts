// Small pure helpers the pages share; unit-tested in test/format.test.ts.

/** "1h 02m", "4m 05s", "12s", or "expired" for the time left until `expiresAt`. */
export function countdown(expiresAt: string | Date, now: number = Date.now()): string {
  const left = Math.floor((new Date(expiresAt).getTime() - now) / 1000);
  if (!(left > 0)) return "expired";
  const h = Math.floor(left / 3600);
  const m = Math.floor((left % 3600) / 60);
  const s = left % 60;
  const pad = (n: number) => String(n).padStart(2, "0");
  if (h > 0) return `${h}h ${pad(m)}m`;
  if (m > 0) return `${m}m ${pad(s)}s`;
  return `${s}s`;
}

export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let value = n / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value < 10 ? value.toFixed(1) : Math.round(value)} ${units[unit]}`;
}

/** Joins a directory and a name the user typed; a name starting with / is already absolute. */
export function joinPath(dir: string, name: string): string {
  if (name.startsWith("/")) return normalise(name);
  return normalise(`${dir}/${name}`);
}

export function normalise(path: string): string {
  const parts: string[] = [];
  for (const part of path.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") parts.pop();
    else parts.push(part);
  }
  return "/" + parts.join("/");
}

export function parentOf(path: string): string {
  const normal = normalise(path);
  return normal.slice(0, normal.lastIndexOf("/")) || "/";
}

export function baseName(path: string): string {
  return normalise(path).split("/").pop() || "/";
}

export type Language = "python" | "javascript" | "typescript" | "json" | "html" | "css" | "markdown" | "plain";

export function languageOf(path: string): Language {
  const ext = baseName(path).split(".").pop()?.toLowerCase() ?? "";
  switch (ext) {
    case "py":
      return "python";
    case "js":
    case "mjs":
    case "cjs":
    case "jsx":
      return "javascript";
    case "ts":
    case "tsx":
      return "typescript";
    case "json":
      return "json";
    case "html":
    case "htm":
      return "html";
    case "css":
      return "css";
    case "md":
    case "markdown":
      return "markdown";
    default:
      return "plain";
  }
}

/** Wait before reconnect attempt `attempt` (0-based): 0.5 s doubling to at most 10 s. */
export function backoff(attempt: number): number {
  return Math.min(10_000, 500 * 2 ** Math.max(0, attempt));
}

/** What the workspace says after the session's container was restarted under the user (the
 *  latest `restarted` entry of its timeline), or null when it never was. */
export function restartNotice(events: { at: string; kind: string }[]): string | null {
  const last = events.filter((e) => e.kind === "restarted").pop();
  if (!last) return null;
  const at = new Date(last.at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return `Restarted at ${at}: your files are intact, but programs that were running were stopped.`;
}

/** A session's state in words, as the sessions list and the workspace show it. */
export function stateInWords(state: string, stopReason?: string | null): string {
  const words: Record<string, string> = {
    hibernating: "going to sleep",
    hibernated: "hibernated (opens on access)",
    restoring: "waking up",
  };
  const said = words[state] ?? state;
  const reasons: Record<string, string> = {
    disk_quota: "its files passed the template's disk limit",
    oom_killed: "it ran out of memory",
  };
  const why = stopReason ? (reasons[stopReason] ?? stopReason) : null;
  return why && (state === "stopped" || state === "failed") ? `${said}: ${why}` : said;
}

/** What a sleeping or waking session's workspace says while it waits for it, in words. */
export function wakeNotice(state: string, estimateMs?: number | null, queuePosition?: number | null): string | null {
  const seconds = estimateMs == null ? undefined : Math.max(1, Math.round(estimateMs / 1000));
  if (state === "hibernated" && queuePosition != null) {
    const place = queuePosition === 1 ? "next in line" : `${queuePosition - 1} ahead of it`;
    const wait = seconds === undefined ? "" : `, about ${seconds} s`;
    return `Waiting for room to wake: the server is full (${place}${wait}). It wakes as soon as another session ends.`;
  }
  const usually = seconds === undefined ? "" : ` (usually about ${seconds} s)`;
  if (state === "hibernating") return "Going to sleep: your files are being saved.";
  if (state === "hibernated") return `Asleep: it wakes when you open a terminal or a file${usually}.`;
  if (state === "restoring") return `Waking up${usually}: your files are back in a moment; programs that were running are not.`;
  return null;
}

/** The idle policy's notice in a session's event stream: when it will sleep, or that it won't. */
export function idleNotice(text: string): { sleepsAt: Date } | "cancelled" | null {
  try {
    const value = JSON.parse(text);
    if (value?.type === "idle-warning" && typeof value.at === "string") return { sleepsAt: new Date(value.at) };
    if (value?.type === "idle-cancelled") return "cancelled";
  } catch {
    // not a notice
  }
  return null;
}

/** The disk watchdog's warning in a session's event stream: how full its disk is. */
export function diskNotice(text: string): { usedMb: number; limitMb: number } | null {
  try {
    const value = JSON.parse(text);
    if (value?.type === "disk-warning" && typeof value.used_mb === "number" && typeof value.limit_mb === "number") {
      return { usedMb: value.used_mb, limitMb: value.limit_mb };
    }
  } catch {
    // not a notice
  }
  return null;
}

/** Whether a presence beacon is due: at most one a minute. */
export function beaconDue(lastSent: number, now: number): boolean {
  return now - lastSent >= 60_000;
}

/** "14:03:07" today, "23 Nov 14:03" on another day: when something happened. */
export function timeInWords(at: Date, now: Date = new Date()): string {
  if (at.toDateString() === now.toDateString()) {
    return at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }
  const day = at.toLocaleDateString([], { day: "numeric", month: "short" });
  return `${day} ${at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}`;
}
