// What the instructor's pages say about a class, its learners and a start for the class;
// unit-tested in test/classes.test.ts.
import type { ClassView, JudgeResult, LabAttempt, Learner, Me, MemberStart } from "../api";
import { checkSummary, isFinished, progressInWords, sessionLives } from "./labs";

/** Instructors and the admin have classes; other users never see the link. */
export function canTeach(me: Me): boolean {
  return me.admin || me.role === "instructor";
}

/** The members typed into the form: separated by commas, spaces or lines, each once. */
export function parseMembers(text: string): string[] {
  return [...new Set(text.split(/[\s,;]+/).filter(Boolean))];
}

/** The form's "max sessions": empty is no limit; anything but a whole number from 1 is said. */
export function parseMaxSessions(text: string): { value?: number; error?: string } {
  const trimmed = text.trim();
  if (!trimmed) return {};
  const value = Number(trimmed);
  if (!Number.isInteger(value) || value < 1) {
    return { error: "Max sessions is a whole number from 1, or empty for no limit" };
  }
  return { value };
}

/** "no limit", "1 session", "4 sessions". */
export function maxSessionsInWords(max: number | null | undefined): string {
  if (max == null) return "no limit";
  return max === 1 ? "1 session" : `${max} sessions`;
}

export function membersInWords(count: number): string {
  return count === 1 ? "1 member" : `${count} members`;
}

/** A learner's row: where their newest attempt stands, in words. */
export interface LearnerRow {
  user: string;
  /** Their newest attempt, at any lab. */
  attempt?: LabAttempt;
  state: "not-started" | "working" | "completed" | "ended";
  progress: string;
  /** Its session lives: its terminals can be watched and it can be reset. */
  live: boolean;
  checks: ChecksSummary | null;
}

export interface ChecksSummary {
  passed: boolean;
  words: string;
  /** The failed checks' titles. */
  failed: string[];
}

export function learnerRow(learner: Learner): LearnerRow {
  const attempt = learner.attempts[0];
  if (!attempt) return { user: learner.user, state: "not-started", progress: "Not started", live: false, checks: null };
  const live = sessionLives(attempt);
  const checks = attempt.last_result ? checksSummary(attempt.last_result) : null;
  const row = { user: learner.user, attempt, live, checks };
  if (isFinished(attempt)) return { ...row, state: "completed", progress: progressInWords(attempt) };
  if (live) return { ...row, state: "working", progress: progressInWords(attempt) };
  return { ...row, state: "ended", progress: `Session ended at step ${attempt.step} of ${attempt.steps}` };
}

/** "Step 2: 1 of 3 checks passed", with the titles of those that failed. */
export function checksSummary(result: JudgeResult): ChecksSummary {
  return {
    passed: result.passed,
    words: `Step ${result.step}: ${checkSummary(result)}`,
    failed: result.checks.filter((c) => !c.passed).map((c) => c.title),
  };
}

/** One row per member, in the roster's order: a member the view has no learner for has not
 *  started anything. */
export function classRows(view: ClassView): LearnerRow[] {
  const learners = new Map(view.learners.map((l) => [l.user, l]));
  const users = [...view.members, ...view.learners.map((l) => l.user).filter((u) => !view.members.includes(u))];
  return users.map((user) => learnerRow(learners.get(user) ?? { user, attempts: [] }));
}

/** "1 check run", "4 checks run". */
export function judgingsInWords(judgings: number): string {
  return judgings === 1 ? "1 check run" : `${judgings} checks run`;
}

/** "updated just now", "updated 7 s ago", "updated 3 min ago". */
export function updatedInWords(at: number, now: number): string {
  const seconds = Math.max(0, Math.floor((now - at) / 1000));
  if (seconds < 2) return "updated just now";
  if (seconds < 60) return `updated ${seconds} s ago`;
  return `updated ${Math.floor(seconds / 60)} min ago`;
}

/** What a start for the class did for one member, in words; the server's message says why not
 *  (past the class's `max_sessions`, `quota_exceeded` says so and what to do). */
export function memberStartInWords(start: MemberStart): string {
  if (start.attempt) {
    if (isFinished(start.attempt)) return "Already completed: their session is still open";
    if (start.attempt.step > 1 || start.attempt.judgings > 0) {
      return `Already under way: ${progressInWords(start.attempt).toLowerCase()}`;
    }
    return "Started";
  }
  return `Not started: ${start.error?.message ?? "the server did not say why"}`;
}

/** "Started for all 4 members", "Started for 3 of 4 members": an attempt already under way counts. */
export function startSummary(started: MemberStart[]): string {
  const ok = started.filter((s) => s.attempt).length;
  if (started.length === 0) return "The class has no members to start it for";
  if (ok === started.length) return started.length === 1 ? "Started for its 1 member" : `Started for all ${ok} members`;
  if (ok === 0) return "Started for no member";
  return `Started for ${ok} of ${membersInWords(started.length)}`;
}

/** "Starting the lab for 12 members: about 24 s". */
export function startingInWords(members: number): string {
  return `Starting the lab for ${membersInWords(members)}: about ${Math.max(2, members * 2)} s`;
}

/** The last line a terminal shows, without its escape sequences: enough to tell terminals apart. */
export function lastLine(text: string, max = 60): string {
  const plain = text
    // CSI sequences (colours, cursor moves), OSC sequences (titles), then other escapes.
    .replace(/\x1b\[[0-?]*[ -/]*[@-~]/g, "")
    .replace(/\x1b\][^\x07\x1b]*(\x07|\x1b\\)/g, "")
    .replace(/\x1b[@-_]/g, "")
    .replace(/\r(?!\n)/g, "\n");
  const line = plain
    .split("\n")
    .map((l) => l.replace(/[\x00-\x1f\x7f]/g, "").trim())
    .filter(Boolean)
    .pop();
  if (!line) return "";
  return line.length > max ? line.slice(0, max - 1) + "…" : line;
}
