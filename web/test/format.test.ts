import { describe, expect, it } from "vitest";
import {
  backoff,
  baseName,
  bytes,
  countdown,
  joinPath,
  languageOf,
  normalise,
  parentOf,
  restartNotice,
  stateInWords,
  wakeNotice,
  idleNotice,
  diskNotice,
  beaconDue,
  timeInWords,
} from "../src/lib/format";

describe("countdown", () => {
  const now = Date.parse("2026-11-23T12:00:00Z");
  it("shows hours and minutes, minutes and seconds, or seconds", () => {
    expect(countdown("2026-11-23T13:02:30Z", now)).toBe("1h 02m");
    expect(countdown("2026-11-23T12:04:05Z", now)).toBe("4m 05s");
    expect(countdown("2026-11-23T12:00:12Z", now)).toBe("12s");
  });
  it("says expired at and past the end, and for nonsense", () => {
    expect(countdown("2026-11-23T12:00:00Z", now)).toBe("expired");
    expect(countdown("2026-11-23T11:00:00Z", now)).toBe("expired");
    expect(countdown("not a date", now)).toBe("expired");
  });
});

describe("paths", () => {
  it("joins relative names and keeps absolute ones", () => {
    expect(joinPath("/home/user", "hello.py")).toBe("/home/user/hello.py");
    expect(joinPath("/home/user/src", "../notes.txt")).toBe("/home/user/notes.txt");
    expect(joinPath("/home/user", "/tmp/x")).toBe("/tmp/x");
  });
  it("normalises, and never climbs above the root", () => {
    expect(normalise("//a/./b/../c/")).toBe("/a/c");
    expect(normalise("/../../etc")).toBe("/etc");
  });
  it("finds parents and base names", () => {
    expect(parentOf("/home/user/a.txt")).toBe("/home/user");
    expect(parentOf("/a")).toBe("/");
    expect(baseName("/home/user/a.txt")).toBe("a.txt");
  });
});

describe("languageOf", () => {
  it("picks the highlighter from the extension", () => {
    expect(languageOf("/x/hello.py")).toBe("python");
    expect(languageOf("app.TSX")).toBe("typescript");
    expect(languageOf("data.json")).toBe("json");
    expect(languageOf("Makefile")).toBe("plain");
  });
});

describe("bytes", () => {
  it("uses binary units", () => {
    expect(bytes(29)).toBe("29 B");
    expect(bytes(1536)).toBe("1.5 KiB");
    expect(bytes(100 * 1024 * 1024)).toBe("100 MiB");
  });
});

describe("backoff", () => {
  it("doubles from half a second up to ten", () => {
    expect([0, 1, 2, 3, 10].map(backoff)).toEqual([500, 1000, 2000, 4000, 10000]);
  });
});

describe("restartNotice", () => {
  it("tells of the latest restart in words, and of none when there was none", () => {
    expect(restartNotice([])).toBeNull();
    expect(restartNotice([{ at: "2026-11-23T12:00:00Z", kind: "oom" }])).toBeNull();
    const notice = restartNotice([
      { at: "2026-11-23T10:00:00Z", kind: "restarted" },
      { at: "2026-11-23T12:30:00Z", kind: "restarted" },
    ]);
    expect(notice).toMatch(/^Restarted at .*30.*files are intact.*programs that were running were stopped/);
  });
});

describe("stateInWords", () => {
  it("says what a sleeping or waking session is, and why one ended", () => {
    expect(stateInWords("hibernated")).toBe("hibernated (opens on access)");
    expect(stateInWords("restoring")).toBe("waking up");
    expect(stateInWords("running", "ignored")).toBe("running");
    expect(stateInWords("failed", "restore_failed: image gone")).toBe("failed: restore_failed: image gone");
    expect(stateInWords("stopped", "disk_quota")).toBe("stopped: its files passed the template's disk limit");
    expect(stateInWords("failed", "oom_killed")).toBe("failed: it ran out of memory");
  });
});

describe("wakeNotice", () => {
  it("says what happens while a session sleeps or wakes, with the usual wait when known", () => {
    expect(wakeNotice("running")).toBeNull();
    expect(wakeNotice("hibernating")).toBe("Going to sleep: your files are being saved.");
    expect(wakeNotice("hibernated")).toBe("Asleep: it wakes when you open a terminal or a file.");
    expect(wakeNotice("restoring", 1400)).toBe(
      "Waking up (usually about 1 s): your files are back in a moment; programs that were running are not.",
    );
    expect(wakeNotice("hibernated", 200)).toContain("usually about 1 s");
  });

  it("says when a wake waits for room, and its place in line", () => {
    expect(wakeNotice("hibernated", 30_600, 1)).toBe(
      "Waiting for room to wake: the server is full (next in line, about 31 s). It wakes as soon as another session ends.",
    );
    expect(wakeNotice("hibernated", undefined, 3)).toContain("(2 ahead of it)");
  });
});

describe("idle notices and the presence beacon", () => {
  it("reads warnings and cancellations, and nothing else", () => {
    expect(idleNotice('{"type":"idle-warning","at":"2026-11-23T12:00:00Z"}')).toEqual({
      sleepsAt: new Date("2026-11-23T12:00:00Z"),
    });
    expect(idleNotice('{"type":"idle-cancelled"}')).toBe("cancelled");
    expect(idleNotice('{"type":"port-open","port":80}')).toBeNull();
    expect(idleNotice("not json")).toBeNull();
  });
  it("reads the disk watchdog's warning, and nothing else", () => {
    expect(diskNotice('{"type":"disk-warning","used_mb":60,"limit_mb":64}')).toEqual({ usedMb: 60, limitMb: 64 });
    expect(diskNotice('{"type":"idle-cancelled"}')).toBeNull();
    expect(diskNotice('{"type":"disk-warning","used_mb":"60"}')).toBeNull();
    expect(diskNotice("not json")).toBeNull();
  });
  it("sends a beacon at most once a minute", () => {
    expect(beaconDue(0, 59_999)).toBe(false);
    expect(beaconDue(0, 60_000)).toBe(true);
  });
});

describe("timeInWords", () => {
  it("tells the time of day for today, and the day too for another", () => {
    const now = new Date(2026, 10, 23, 18, 0, 0);
    expect(timeInWords(new Date(2026, 10, 23, 14, 3, 7), now)).toMatch(/14.03.07|2.03.07/);
    const yesterday = timeInWords(new Date(2026, 10, 22, 14, 3, 7), now);
    expect(yesterday).toMatch(/22/);
    expect(yesterday).not.toMatch(/07$/);
  });
});
