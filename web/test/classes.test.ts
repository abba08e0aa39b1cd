import { describe, expect, it } from "vitest";
import type { ClassView, JudgeResult, LabAttempt, Me } from "../src/api";
import {
  canTeach,
  classRows,
  judgingsInWords,
  lastLine,
  learnerRow,
  maxSessionsInWords,
  memberStartInWords,
  parseMaxSessions,
  parseMembers,
  startingInWords,
  startSummary,
  updatedInWords,
} from "../src/lib/classes";

const attempt = (fields: Partial<LabAttempt> = {}): LabAttempt => ({
  id: "a1",
  lab: "dockerfile-basics",
  owner: "alice",
  session_id: "s1",
  step: 2,
  steps: 3,
  started_at: "2026-11-23T12:00:00Z",
  judgings: 4,
  hints_shown: 0,
  session_state: "running",
  ...fields,
});

const check = (title: string, passed: boolean) => ({ id: title, title, passed, message: "", duration_ms: 5 });

const result = (checks: ReturnType<typeof check>[]): JudgeResult => ({
  passed: checks.every((c) => c.passed),
  step: 2,
  checks,
  completed: false,
  judged_at: "2026-11-23T12:07:00Z",
  duration_ms: 1200,
});

const me = (fields: Partial<Me>): Me => ({ name: "ines", admin: false, role: "user", csrf_token: "c", ...fields });

describe("the classes link", () => {
  it("is for instructors and the admin", () => {
    expect(canTeach(me({ role: "instructor" }))).toBe(true);
    expect(canTeach(me({ admin: true }))).toBe(true);
    expect(canTeach(me({}))).toBe(false);
  });
});

describe("the form", () => {
  it("reads members separated by commas, spaces or lines, each once", () => {
    expect(parseMembers(" alice, bob carol\ndave,,alice ")).toEqual(["alice", "bob", "carol", "dave"]);
    expect(parseMembers(" , ")).toEqual([]);
  });
  it("reads max sessions: empty is no limit, a bad number is said", () => {
    expect(parseMaxSessions("")).toEqual({});
    expect(parseMaxSessions(" 4 ")).toEqual({ value: 4 });
    expect(parseMaxSessions("0").error).toContain("whole number from 1");
    expect(parseMaxSessions("2.5").error).toBeDefined();
    expect(parseMaxSessions("many").error).toBeDefined();
  });
  it("says the limit", () => {
    expect(maxSessionsInWords(undefined)).toBe("no limit");
    expect(maxSessionsInWords(null)).toBe("no limit");
    expect(maxSessionsInWords(1)).toBe("1 session");
    expect(maxSessionsInWords(8)).toBe("8 sessions");
  });
});

describe("a learner's row", () => {
  it("says a learner with no attempt has not started", () => {
    expect(learnerRow({ user: "bob", attempts: [] })).toEqual({
      user: "bob",
      state: "not-started",
      progress: "Not started",
      live: false,
      checks: null,
    });
  });
  it("follows their newest attempt: its step, and whether its session lives", () => {
    const row = learnerRow({ user: "alice", attempts: [attempt(), attempt({ id: "older", lab: "multi-stage" })] });
    expect([row.state, row.progress, row.live, row.attempt?.id]).toEqual(["working", "Step 2 of 3", true, "a1"]);
    const asleep = learnerRow({ user: "alice", attempts: [attempt({ session_state: "hibernated" })] });
    expect([asleep.state, asleep.live]).toEqual(["working", true]);
    const ended = learnerRow({ user: "alice", attempts: [attempt({ session_state: "stopped" })] });
    expect([ended.state, ended.progress, ended.live]).toEqual(["ended", "Session ended at step 2 of 3", false]);
  });
  it("says how long a completed lab took, even once its session ended", () => {
    const done = attempt({ step: 4, completed_at: "2026-11-23T12:12:00Z", session_state: "stopped" });
    const row = learnerRow({ user: "alice", attempts: [done] });
    expect([row.state, row.progress, row.live]).toEqual(["completed", "Completed in 12 min", false]);
  });
  it("sums up the last check, with the failed checks' titles", () => {
    const failing = result([check("Builds", true), check("No .env in the image", false), check("Small", false)]);
    const row = learnerRow({ user: "alice", attempts: [attempt({ last_result: failing })] });
    expect(row.checks).toEqual({
      passed: false,
      words: "Step 2: 1 of 3 checks passed",
      failed: ["No .env in the image", "Small"],
    });
    const passing = learnerRow({ user: "alice", attempts: [attempt({ last_result: result([check("Builds", true)]) })] });
    expect(passing.checks).toEqual({ passed: true, words: "Step 2: The check passed", failed: [] });
    expect(learnerRow({ user: "alice", attempts: [attempt()] }).checks).toBeNull();
  });
  it("counts judgings", () => {
    expect(judgingsInWords(0)).toBe("0 checks run");
    expect(judgingsInWords(1)).toBe("1 check run");
    expect(judgingsInWords(5)).toBe("5 checks run");
  });
});

describe("the class's rows", () => {
  it("are the roster's, in order, with a row for a member the view has no learner for", () => {
    const view: ClassView = {
      id: "c1",
      name: "Monday",
      instructor: "ines",
      members: ["alice", "bob", "carol"],
      created_at: "2026-11-23T09:00:00Z",
      learners: [
        { user: "carol", attempts: [attempt({ owner: "carol" })] },
        { user: "alice", attempts: [] },
      ],
    };
    expect(classRows(view).map((r) => [r.user, r.state])).toEqual([
      ["alice", "not-started"],
      ["bob", "not-started"],
      ["carol", "working"],
    ]);
  });
});

describe("live", () => {
  it("says when the view was last updated", () => {
    const at = Date.parse("2026-11-23T12:00:00Z");
    expect(updatedInWords(at, at + 900)).toBe("updated just now");
    expect(updatedInWords(at, at + 7_400)).toBe("updated 7 s ago");
    expect(updatedInWords(at, at + 185_000)).toBe("updated 3 min ago");
  });
});

describe("a start for the class", () => {
  it("says what happened for each member", () => {
    expect(memberStartInWords({ user: "alice", attempt: attempt({ step: 1, judgings: 0 }) })).toBe("Started");
    expect(memberStartInWords({ user: "alice", attempt: attempt() })).toBe("Already under way: step 2 of 3");
    expect(memberStartInWords({ user: "alice", attempt: attempt({ step: 4 }) })).toBe(
      "Already completed: their session is still open",
    );
    const message = "class Monday may have 2 lab sessions at once; end some, or raise its max_sessions";
    expect(memberStartInWords({ user: "dave", error: { code: "quota_exceeded", message } })).toBe(`Not started: ${message}`);
    expect(memberStartInWords({ user: "erin", error: { code: "engine_unavailable", message: "Docker is down" } })).toBe(
      "Not started: Docker is down",
    );
  });
  it("sums up, counting attempts already under way", () => {
    const ok = { user: "alice", attempt: attempt() };
    const failed = { user: "dave", error: { code: "quota_exceeded" as const, message: "full" } };
    expect(startSummary([ok, ok])).toBe("Started for all 2 members");
    expect(startSummary([ok])).toBe("Started for its 1 member");
    expect(startSummary([ok, failed, ok])).toBe("Started for 2 of 3 members");
    expect(startSummary([failed])).toBe("Started for no member");
    expect(startSummary([])).toBe("The class has no members to start it for");
  });
  it("says how long it takes: about 2 s a member", () => {
    expect(startingInWords(12)).toBe("Starting the lab for 12 members: about 24 s");
    expect(startingInWords(0)).toBe("Starting the lab for 0 members: about 2 s");
  });
});

describe("terminal tails", () => {
  it("show the last line on screen, without escape sequences", () => {
    expect(lastLine("$ ls\r\nDockerfile  app.py\r\n\x1b[01;32malice@lab\x1b[00m:~$ docker build .\r\n")).toBe(
      "alice@lab:~$ docker build .",
    );
    expect(lastLine("\x1b]0;title\x07progress 10%\rprogress 90%")).toBe("progress 90%");
    expect(lastLine("")).toBe("");
    expect(lastLine("x".repeat(80), 10)).toBe("xxxxxxxxx…");
  });
});
