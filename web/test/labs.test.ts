import { describe, expect, it } from "vitest";
import type { JudgeResult, LabAttempt } from "../src/api";
import {
  afterJudging,
  checkingInWords,
  checkSummary,
  durationInWords,
  hintLabel,
  hintsLeftInWords,
  isFinished,
  labStatus,
  metricsInWords,
  newestAttempts,
  progressInWords,
  savedHints,
  saveHints,
} from "../src/lib/labs";

const attempt = (fields: Partial<LabAttempt> = {}): LabAttempt => ({
  id: "a1",
  lab: "dockerfile-basics",
  owner: "alice",
  session_id: "s1",
  step: 1,
  steps: 2,
  started_at: "2026-11-23T12:00:00Z",
  judgings: 0,
  hints_shown: 0,
  ...fields,
});

const check = (id: string, passed: boolean) => ({ id, title: id, passed, message: "", duration_ms: 5 });

const result = (fields: Partial<JudgeResult> = {}): JudgeResult => ({
  passed: true,
  step: 1,
  checks: [check("builds", true)],
  completed: false,
  judged_at: "2026-11-23T12:07:00Z",
  duration_ms: 12_000,
  ...fields,
});

describe("durationInWords", () => {
  it("says seconds, minutes, or hours and minutes", () => {
    expect(durationInWords(40)).toBe("40 s");
    expect(durationInWords(12 * 60 + 20)).toBe("12 min");
    expect(durationInWords(3600)).toBe("1 h");
    expect(durationInWords(3900)).toBe("1 h 05 min");
    expect(durationInWords(-3)).toBe("0 s");
  });
});

describe("progress", () => {
  it("says the step, or how long the finished lab took", () => {
    expect(progressInWords(attempt({ step: 2, steps: 3 }))).toBe("Step 2 of 3");
    const done = attempt({ step: 3, completed_at: "2026-11-23T12:12:00Z" });
    expect(isFinished(done)).toBe(true);
    expect(progressInWords(done)).toBe("Completed in 12 min");
    expect(progressInWords({ ...done, duration_seconds: 95 })).toBe("Completed in 2 min");
    expect(progressInWords(attempt({ step: 3 }))).toBe("Completed");
  });
  it("gives each lab's card its words and its button", () => {
    expect(labStatus(undefined)).toEqual({ words: "Not started", action: "Start" });
    expect(labStatus(attempt({ session_state: "running" }))).toEqual({ words: "Step 1 of 2", action: "Continue" });
    expect(labStatus(attempt({ step: 2, session_state: "stopped" }))).toEqual({
      words: "Stopped at step 2 of 2: its session has ended",
      action: "Start again",
    });
    const done = attempt({ step: 3, duration_seconds: 600 });
    expect(labStatus({ ...done, session_state: "hibernated" })).toEqual({ words: "Completed in 10 min", action: "Open" });
    expect(labStatus({ ...done, session_state: "stopped" }).action).toBe("Start again");
  });
  it("keeps the newest attempt of each lab", () => {
    const newest = newestAttempts([
      attempt({ id: "new" }),
      attempt({ id: "old" }),
      attempt({ id: "other", lab: "multi-stage" }),
    ]);
    expect([...newest.values()].map((a) => a.id)).toEqual(["new", "other"]);
  });
});

describe("judgings", () => {
  it("sum up the checks", () => {
    expect(checkSummary(result())).toBe("The check passed");
    expect(checkSummary(result({ passed: false, checks: [check("builds", false)] }))).toBe("The check failed");
    const three = [check("a", true), check("b", false), check("c", true)];
    expect(checkSummary(result({ passed: false, checks: three }))).toBe("2 of 3 checks passed");
    expect(checkSummary(result({ checks: [check("a", true), check("b", true)] }))).toBe("All 2 checks passed");
  });
  it("put measurements in words, with their units", () => {
    expect(metricsInWords({ size_mb: 52.25, layers: 7, build_ms: 1200, status: 200 })).toEqual([
      "size: 52.3 MB",
      "layers: 7",
      "build: 1200 ms",
      "status: 200",
    ]);
    expect(metricsInWords(undefined)).toEqual([]);
  });
  it("say a Docker lab is building while the check runs", () => {
    expect(checkingInWords(true, 0.4)).toBe("Checking… building your image");
    expect(checkingInWords(true, 12.7)).toBe("Checking… building your image (12 s)");
    expect(checkingInWords(false, 3)).toBe("Checking… (3 s)");
  });
  it("move the attempt on when its current step passes, and end it after the last", () => {
    const failed = afterJudging(attempt(), result({ passed: false }));
    expect([failed.step, failed.judgings]).toEqual([1, 1]);
    const passed = afterJudging(attempt({ hints_shown: 2 }), result());
    expect([passed.step, passed.hints_shown, passed.completed_at]).toEqual([2, 0, undefined]);
    const last = afterJudging(attempt({ step: 2 }), result({ step: 2, completed: true }));
    expect(isFinished(last)).toBe(true);
    expect([last.completed_at, last.duration_seconds]).toEqual(["2026-11-23T12:07:00Z", 420]);
    // An earlier step judged again moves nothing.
    expect(afterJudging(attempt({ step: 2 }), result({ step: 1 })).step).toBe(2);
  });
});

describe("hints", () => {
  const hint = { text: "Start FROM an image with Python", step: 1, remaining_static: 1 };
  it("are labelled by where they come from", () => {
    expect(hintLabel({ ...hint, source: "static", level: 1 })).toBe("Hint 1");
    expect(hintLabel({ ...hint, source: "ai" })).toBe("Assistant");
  });
  it("say how many of the lab's own are left", () => {
    expect(hintsLeftInWords(2)).toBe("2 of the lab's hints left for this step");
    expect(hintsLeftInWords(1)).toBe("1 of the lab's hints left for this step");
    expect(hintsLeftInWords(0)).toMatch(/used up.*assistant/);
  });
  it("are kept per attempt across a reload, and survive garbage", () => {
    saveHints("a1", [{ ...hint, source: "static", level: 1, asked: "why?" }]);
    expect(savedHints("a1")).toEqual([{ ...hint, source: "static", level: 1, asked: "why?" }]);
    expect(savedHints("a2")).toEqual([]);
    sessionStorage.setItem("berth.hints.a3", "{not json");
    expect(savedHints("a3")).toEqual([]);
    sessionStorage.setItem("berth.hints.a4", '[{"text":1},null,{"text":"ok","step":2}]');
    expect(savedHints("a4")).toEqual([{ text: "ok", step: 2 }]);
  });
});
