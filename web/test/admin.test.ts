import { describe, expect, it } from "vitest";
import type { Home, Session, User } from "../src/api";
import {
  capacityGauge,
  checkUserName,
  deleteUserQuestion,
  homeSizeInWords,
  homeUseInWords,
  ordinal,
  poolInWords,
  queuedInWords,
  roleChangeInWords,
  sessionActions,
  sortSessions,
  sortUsers,
  statesInWords,
} from "../src/lib/admin";

const session = (id: string, state: Session["state"], created_at: string): Session => ({
  id,
  owner: "alice",
  template: "default",
  state,
  labels: {},
  created_at,
  expires_at: "2026-11-23T20:00:00Z",
  last_activity: created_at,
});

const home = (fields: Partial<Home> = {}): Home => ({
  name: "berth-home-alice-default",
  user: "alice",
  template: "default",
  created_at: "2026-11-23T12:00:00Z",
  ...fields,
});

describe("users", () => {
  it("have names the server takes, said before asking it", () => {
    expect(checkUserName(" ada-l_2 ")).toEqual({ name: "ada-l_2" });
    expect(checkUserName("").error).toBe("Give the user a name");
    expect(checkUserName("admin").error).toContain("admin");
    expect(checkUserName("Ada").error).toContain("a-z");
    expect(checkUserName("-ada").error).toBeDefined();
    expect(checkUserName("a".repeat(32))).toEqual({ name: "a".repeat(32) });
    expect(checkUserName("a".repeat(33)).error).toBeDefined();
  });
  it("are listed by name", () => {
    const user = (name: string): User => ({ id: name, name, role: "user", created_at: "2026-11-23T12:00:00Z" });
    expect(sortUsers([user("carol"), user("alice"), user("bob")]).map((u) => u.name)).toEqual(["alice", "bob", "carol"]);
  });
  it("say what a deletion and a change of role do", () => {
    expect(deleteUserQuestion("bob")).toMatch(/^Delete the user bob\? Their sessions end.*tokens and persistent homes/);
    expect(roleChangeInWords("ines", "instructor")).toBe("ines is now an instructor: they may keep classes");
    expect(roleChangeInWords("ines", "user")).toBe("ines is now a user");
  });
});

describe("capacity", () => {
  it("fills the bar with live sessions against the limit, and says how full", () => {
    expect(capacityGauge(3, 10)).toEqual({ fraction: 0.3, words: "3 of 10 live sessions (30 %)", level: "ok" });
    expect(capacityGauge(8, 10).level).toBe("high");
    const full = capacityGauge(12, 10);
    expect([full.fraction, full.level]).toEqual([1, "full"]);
    expect(full.words).toBe("12 of 10 live sessions (100 %): full, new sessions wait in the queue");
    expect(capacityGauge(0, 1).words).toBe("0 of 1 live session (0 %)");
  });
  it("counts sessions by state in the order of their life, without the empty states", () => {
    expect(statesInWords({ stopped: 4, running: 3, restoring: 1, pooled: 0, creating: 2, mystery: 1 })).toEqual([
      { state: "creating", count: 2, words: "2 creating" },
      { state: "running", count: 3, words: "3 running" },
      { state: "restoring", count: 1, words: "1 waking up" },
      { state: "stopped", count: 4, words: "4 stopped" },
      { state: "mystery", count: 1, words: "1 mystery" },
    ]);
    expect(statesInWords({})).toEqual([]);
  });
  it("says a queued create's place in line", () => {
    expect([1, 2, 3, 4, 11, 12, 13, 21, 22, 101].map(ordinal)).toEqual([
      "1st",
      "2nd",
      "3rd",
      "4th",
      "11th",
      "12th",
      "13th",
      "21st",
      "22nd",
      "101st",
    ]);
    expect(queuedInWords({ ticket: "q1", owner: "bob", template: "default", position: 2 })).toBe("queued, 2nd in line");
  });
  it("says what a warm pool holds", () => {
    const pool = { template: "default", min_ready: 2, ready: 1, warming: 1, claimed: 7 };
    expect(poolInWords({ ...pool, max: 4 })).toBe("1 ready (keeps 2 to 4), 1 warming, 7 handed out");
    expect(poolInWords({ ...pool, max: null, claimed: 1 })).toBe("1 ready (keeps at least 2), 1 warming, 1 handed out");
  });
});

describe("sessions", () => {
  it("list the live first, then those asleep, then those that ended, newest first within each", () => {
    const sorted = sortSessions([
      session("old", "running", "2026-11-23T10:00:00Z"),
      session("ended", "failed", "2026-11-23T13:00:00Z"),
      session("asleep", "hibernated", "2026-11-23T12:00:00Z"),
      session("new", "restoring", "2026-11-23T11:00:00Z"),
    ]);
    expect(sorted.map((s) => s.id)).toEqual(["new", "old", "asleep", "ended"]);
  });
  it("offer only what their state allows", () => {
    expect(sessionActions(session("s", "running", ""))).toEqual({ hibernate: true, resume: false, remove: true });
    expect(sessionActions(session("s", "hibernated", ""))).toEqual({ hibernate: false, resume: true, remove: true });
    expect(sessionActions(session("s", "restoring", ""))).toEqual({ hibernate: false, resume: false, remove: true });
    expect(sessionActions(session("s", "stopping", "")).remove).toBe(false);
    expect(sessionActions(session("s", "failed", "")).remove).toBe(false);
  });
});

describe("homes", () => {
  it("say their size limit and the session using them", () => {
    expect(homeSizeInWords(home({ size_mb: 2048 }))).toBe("2048 MB");
    expect(homeSizeInWords(home({ size_mb: null }))).toBe("no limit");
    expect(homeUseInWords(home({ used_by: "s1" }))).toBe("in use by s1");
    expect(homeUseInWords(home())).toBe("not in use");
  });
});
