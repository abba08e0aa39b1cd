// What the admin page says about users, sessions, the host's capacity and persistent homes;
// unit-tested in test/admin.test.ts.
import type { Home, PoolStatus, QueuedCreate, Role, Session, User } from "../api";

export const ROLES: { value: Role; label: string }[] = [
  { value: "user", label: "User" },
  { value: "instructor", label: "Instructor" },
];

/** A new user's name as the server takes it (1 to 32 of a-z, 0-9, `-`, `_`, starting with a
 *  letter or digit; `admin` is taken), or what is wrong with it, said before asking. */
export function checkUserName(text: string): { name?: string; error?: string } {
  const name = text.trim();
  if (!name) return { error: "Give the user a name" };
  if (name === "admin") return { error: "The name admin is Berth's admin's" };
  if (!/^[a-z0-9][a-z0-9_-]{0,31}$/.test(name)) {
    return { error: "A user name is 1 to 32 of a-z, 0-9, - and _, starting with a letter or digit" };
  }
  return { name };
}

/** What a change of role did: "ada is now an instructor: they may keep classes". */
export function roleChangeInWords(name: string, role: Role): string {
  return role === "instructor" ? `${name} is now an instructor: they may keep classes` : `${name} is now a user`;
}

export function sortUsers(users: User[]): User[] {
  return [...users].sort((a, b) => a.name.localeCompare(b.name));
}

/** What deleting a user does, asked before it is done. */
export function deleteUserQuestion(name: string): string {
  return (
    `Delete the user ${name}? Their sessions end, and their tokens and persistent homes are deleted ` +
    "with every file in them. Their snapshots stay. This cannot be undone."
  );
}

/** Live sessions against `capacity.max_sessions`: the bar's fill (0 to 1), in words, and how
 *  full: `high` from 80 %, `full` when creates queue. */
export function capacityGauge(live: number, max: number): { fraction: number; words: string; level: "ok" | "high" | "full" } {
  const fraction = max > 0 ? Math.min(1, live / max) : 1;
  const level = live >= max ? "full" : fraction >= 0.8 ? "high" : "ok";
  const sessions = max === 1 ? "session" : "sessions";
  const full = level === "full" ? ": full, new sessions wait in the queue" : "";
  return { fraction, words: `${live} of ${max} live ${sessions} (${Math.round(fraction * 100)} %)${full}`, level };
}

/** The states in the order of a session's life. */
const STATE_ORDER = ["creating", "pooled", "running", "hibernating", "hibernated", "restoring", "stopping", "stopped", "failed"];
const STATE_LABELS: Record<string, string> = {
  pooled: "warm in a pool",
  hibernating: "going to sleep",
  restoring: "waking up",
};

/** Sessions by state, in the order of a session's life ("3 running", "1 waking up"), without
 *  the states no session is in. */
export function statesInWords(byState: Record<string, number>): { state: string; count: number; words: string }[] {
  const rank = (state: string) => {
    const i = STATE_ORDER.indexOf(state);
    return i < 0 ? STATE_ORDER.length : i;
  };
  return Object.entries(byState)
    .filter(([, count]) => count > 0)
    .sort(([a], [b]) => rank(a) - rank(b) || a.localeCompare(b))
    .map(([state, count]) => ({ state, count, words: `${count} ${STATE_LABELS[state] ?? state}` }));
}

/** "1st", "2nd", "3rd", "11th", "22nd". */
export function ordinal(n: number): string {
  const teen = n % 100 >= 11 && n % 100 <= 13;
  const suffix = teen ? "th" : ({ 1: "st", 2: "nd", 3: "rd" } as Record<number, string>)[n % 10] ?? "th";
  return `${n}${suffix}`;
}

/** A create waiting for room: "queued, 1st in line". */
export function queuedInWords(queued: QueuedCreate): string {
  return `queued, ${ordinal(queued.position)} in line`;
}

/** A warm pool: "1 ready (keeps 2 to 4), 1 warming, 7 handed out". */
export function poolInWords(pool: PoolStatus): string {
  const keeps = pool.max == null ? `keeps at least ${pool.min_ready}` : `keeps ${pool.min_ready} to ${pool.max}`;
  const handed = pool.claimed === 1 ? "1 handed out" : `${pool.claimed} handed out`;
  return `${pool.ready} ready (${keeps}), ${pool.warming} warming, ${handed}`;
}

const ENDED = ["stopped", "failed"];
const ASLEEP = ["hibernated"];

/** Live sessions first, then those asleep, then those that ended; the newest first within each. */
export function sortSessions(sessions: Session[]): Session[] {
  const rank = (s: Session) => (ENDED.includes(s.state) ? 2 : ASLEEP.includes(s.state) ? 1 : 0);
  return [...sessions].sort((a, b) => rank(a) - rank(b) || b.created_at.localeCompare(a.created_at));
}

/** The buttons a session's row has: only what the session's state allows. */
export function sessionActions(session: Session): { hibernate: boolean; resume: boolean; remove: boolean } {
  return {
    hibernate: session.state === "running",
    resume: session.state === "hibernated",
    remove: !ENDED.includes(session.state) && session.state !== "stopping",
  };
}

/** "2048 MB", or "no limit" for a home the engine does not bound. */
export function homeSizeInWords(home: Home): string {
  return home.size_mb == null ? "no limit" : `${home.size_mb} MB`;
}

/** Which session has the home mounted; deleting it waits until none does. */
export function homeUseInWords(home: Home): string {
  return home.used_by ? `in use by ${home.used_by}` : "not in use";
}
