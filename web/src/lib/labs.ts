// What the labs pages say about an attempt, a judging and hints; unit-tested in
// test/labs.test.ts.
import type { Hint, JudgeResult, LabAttempt } from "../api";

/** "40 s", "12 min", "1 h", "1 h 05 min". */
export function durationInWords(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const minutes = Math.round(s / 60);
  if (minutes < 60) return `${minutes} min`;
  const h = Math.floor(minutes / 60);
  return minutes % 60 ? `${h} h ${String(minutes % 60).padStart(2, "0")} min` : `${h} h`;
}

/** Every step has passed. */
export function isFinished(attempt: LabAttempt): boolean {
  return attempt.completed_at != null || attempt.step > attempt.steps;
}

/** How long a finished attempt took, when the server or its times say. */
export function attemptSeconds(attempt: LabAttempt): number | null {
  if (attempt.duration_seconds != null) return attempt.duration_seconds;
  if (!attempt.completed_at) return null;
  const seconds = (Date.parse(attempt.completed_at) - Date.parse(attempt.started_at)) / 1000;
  return Number.isFinite(seconds) ? seconds : null;
}

/** "Step 2 of 3", or "Completed in 12 min". */
export function progressInWords(attempt: LabAttempt): string {
  if (!isFinished(attempt)) return `Step ${attempt.step} of ${attempt.steps}`;
  const seconds = attemptSeconds(attempt);
  return seconds === null ? "Completed" : `Completed in ${durationInWords(seconds)}`;
}

const ENDED = ["stopping", "stopped", "failed"];

/** The attempt's session still lives (asleep counts: opening it wakes it). */
export function sessionLives(attempt: LabAttempt): boolean {
  return !attempt.session_state || !ENDED.includes(attempt.session_state);
}

/** Where the caller stands with a lab (its newest attempt), and what its card's button says. */
export function labStatus(attempt: LabAttempt | undefined): { words: string; action: string } {
  if (!attempt) return { words: "Not started", action: "Start" };
  const live = sessionLives(attempt);
  if (isFinished(attempt)) return { words: progressInWords(attempt), action: live ? "Open" : "Start again" };
  if (live) return { words: progressInWords(attempt), action: "Continue" };
  return { words: `Stopped at step ${attempt.step} of ${attempt.steps}: its session has ended`, action: "Start again" };
}

/** The newest attempt at each lab, from attempts listed newest first. */
export function newestAttempts(attempts: LabAttempt[]): Map<string, LabAttempt> {
  const newest = new Map<string, LabAttempt>();
  for (const attempt of attempts) if (!newest.has(attempt.lab)) newest.set(attempt.lab, attempt);
  return newest;
}

/** "All 3 checks passed", "1 of 3 checks passed", "The check failed". */
export function checkSummary(result: JudgeResult): string {
  const total = result.checks.length;
  const passed = result.checks.filter((c) => c.passed).length;
  if (total === 1) return passed ? "The check passed" : "The check failed";
  if (passed === total) return `All ${total} checks passed`;
  return `${passed} of ${total} checks passed`;
}

const UNITS: Record<string, string> = { mb: "MB", kb: "KB", ms: "ms", s: "s", seconds: "s", pct: "%" };

/** A check's measurements in words: `{size_mb: 52.25}` is "size: 52.3 MB". */
export function metricsInWords(metrics: Record<string, number> | undefined): string[] {
  return Object.entries(metrics ?? {}).map(([key, value]) => {
    const parts = key.split("_");
    const unit = parts.length > 1 ? UNITS[parts[parts.length - 1]] : undefined;
    const name = (unit ? parts.slice(0, -1) : parts).join(" ");
    const number = Number.isInteger(value) ? String(value) : String(Math.round(value * 10) / 10);
    return unit ? `${name}: ${number}${unit === "%" ? "" : " "}${unit}` : `${name}: ${number}`;
  });
}

/** "Checking… building your image" while a judging runs, with how long it has been. */
export function checkingInWords(docker: boolean, elapsedSeconds: number): string {
  const doing = docker ? "Checking… building your image" : "Checking…";
  return elapsedSeconds >= 1 ? `${doing} (${Math.floor(elapsedSeconds)} s)` : doing;
}

/** The attempt as a judging leaves it: a passed current step moves it on, the last one ends it.
 *  The server says the same once asked again; this shows it without waiting. */
export function afterJudging(attempt: LabAttempt, result: JudgeResult): LabAttempt {
  const next = { ...attempt, last_result: result, judgings: attempt.judgings + 1 };
  if (!result.passed || result.step !== attempt.step) return next;
  next.step = attempt.step + 1;
  next.hints_shown = 0;
  if (result.completed) {
    next.completed_at = result.judged_at;
    next.duration_seconds ??= Math.round((Date.parse(result.judged_at) - Date.parse(attempt.started_at)) / 1000);
  }
  return next;
}

/** A hint or an explanation as the steps panel lists it: what was asked, if anything. */
export interface HintEntry extends Hint {
  asked?: string;
}

/** "Hint 2" for one of the lab's own hints, "Assistant" for the AI's. */
export function hintLabel(hint: Hint): string {
  if (hint.source !== "static") return "Assistant";
  return hint.level ? `Hint ${hint.level}` : "Hint";
}

/** What is left on the lab's hint ladder for a step. */
export function hintsLeftInWords(remaining: number): string {
  if (remaining > 1) return `${remaining} of the lab's hints left for this step`;
  if (remaining === 1) return "1 of the lab's hints left for this step";
  return "The lab's own hints for this step are used up: asking again asks the assistant, if this Berth has one";
}

// Hints received are kept per attempt in sessionStorage, so a reload still shows them (the
// server counts hints shown but does not say them again).
const key = (attemptId: string) => `berth.hints.${attemptId}`;

export function savedHints(attemptId: string, storage: Storage = sessionStorage): HintEntry[] {
  try {
    const value = JSON.parse(storage.getItem(key(attemptId)) ?? "[]");
    return Array.isArray(value) ? value.filter((h) => typeof h?.text === "string" && typeof h?.step === "number") : [];
  } catch {
    return [];
  }
}

export function saveHints(attemptId: string, hints: HintEntry[], storage: Storage = sessionStorage): void {
  storage.setItem(key(attemptId), JSON.stringify(hints));
}
