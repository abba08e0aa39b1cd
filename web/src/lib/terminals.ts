// Which terminals a session's tabs show, kept per session in sessionStorage so a reload
// reattaches to the same terminals (their ids are useless without the login cookie).

const key = (sessionId: string) => `berth.terminals.${sessionId}`;

export function savedTerminals(sessionId: string, storage: Storage = sessionStorage): string[] {
  try {
    const value = JSON.parse(storage.getItem(key(sessionId)) ?? "[]");
    return Array.isArray(value) ? value.filter((v) => typeof v === "string") : [];
  } catch {
    return [];
  }
}

export function saveTerminals(sessionId: string, ids: string[], storage: Storage = sessionStorage): void {
  storage.setItem(key(sessionId), JSON.stringify(ids));
}
