import { describe, expect, it } from "vitest";
import type { TimelineEvent } from "../src/api";
import {
  emptyTimelineInWords,
  exitCodeOf,
  filterCounts,
  groupOf,
  timelineRows,
} from "../src/lib/timeline";

const event = (kind: string, fields: Partial<TimelineEvent> = {}): TimelineEvent => ({
  at: "2026-11-23T12:00:00Z",
  kind,
  message: kind,
  ...fields,
});

const events: TimelineEvent[] = [
  event("created", { at: "2026-11-23T12:00:00Z", message: "created from default" }),
  event("running", { at: "2026-11-23T12:00:02Z" }),
  event("file_written", { at: "2026-11-23T12:01:00Z", actor: "alice", message: "wrote /home/user/hello.py" }),
  event("command", {
    at: "2026-11-23T12:02:00Z",
    message: "ran `ls /nope` in a terminal: exit 2",
    data: { command: "ls /nope", exit_code: 2, terminal: "t1" },
  }),
  event("exec", { at: "2026-11-23T12:03:00Z", actor: "alice", data: { command: "true", exit_code: 0 } }),
  event("port_opened", { at: "2026-11-23T12:04:00Z", data: { port: 8000 } }),
  event("custom", { at: "2026-11-23T12:05:00Z", message: "deploy {}" }),
];

describe("the timeline's groups", () => {
  it("put each kind in its group, and a kind this page does not know in other", () => {
    expect(["created", "oom", "compacted", "hibernate_requested", "extended"].map(groupOf)).toEqual(
      Array(5).fill("lifecycle"),
    );
    expect(["exec", "process_started", "process_exited", "command"].map(groupOf)).toEqual(Array(4).fill("commands"));
    expect(["file_written", "file_moved", "directory_created", "files_uploaded", "snapshot"].map(groupOf)).toEqual(
      Array(5).fill("files"),
    );
    expect(["port_opened", "port_closed"].map(groupOf)).toEqual(["ports", "ports"]);
    expect(["custom", "journal_overflow", "from_the_future"].map(groupOf)).toEqual(["other", "other", "other"]);
  });
  it("count what each filter shows: other kinds only under all", () => {
    expect(filterCounts(events)).toEqual({ all: 7, lifecycle: 2, commands: 2, files: 1, ports: 1 });
  });
});

describe("the timeline's rows", () => {
  it("are newest first, with who did it: the session for what it saw itself, else Berth", () => {
    const rows = timelineRows(events, "all");
    expect(rows.map((r) => r.kind)).toEqual(["custom", "port_opened", "exec", "command", "file_written", "running", "created"]);
    expect(rows.find((r) => r.kind === "file_written")!.who).toBe("alice");
    expect(rows.find((r) => r.kind === "created")!.who).toBe("Berth");
    expect(rows.find((r) => r.kind === "command")!.who).toBe("in the session");
    expect(rows.find((r) => r.kind === "port_opened")!.who).toBe("in the session");
    expect(rows.find((r) => r.kind === "file_written")!.label).toBe("file written");
    expect(new Set(rows.map((r) => r.key)).size).toBe(rows.length);
  });
  it("show one group when filtered", () => {
    expect(timelineRows(events, "commands").map((r) => r.kind)).toEqual(["exec", "command"]);
    expect(timelineRows(events, "lifecycle").map((r) => r.kind)).toEqual(["running", "created"]);
  });
  it("mark commands that exited with a code other than 0, and nothing else", () => {
    const failed = timelineRows(events, "all").filter((r) => r.failed);
    expect(failed.map((r) => r.message)).toEqual(["ran `ls /nope` in a terminal: exit 2"]);
    const killed = event("process_exited", { data: { exit_code: null, signal: 9 } });
    expect(timelineRows([killed], "all")[0].failed).toBe(false);
    expect(timelineRows([event("exec", { data: { exit_code: 127 } })], "all")[0].failed).toBe(true);
  });
  it("read an exit code only when the data has a number for it", () => {
    expect(exitCodeOf(event("exec", { data: { exit_code: 1 } }))).toBe(1);
    expect(exitCodeOf(event("exec", { data: { exit_code: "1" } }))).toBeNull();
    expect(exitCodeOf(event("exec", { data: null }))).toBeNull();
    expect(exitCodeOf(event("exec"))).toBeNull();
  });
});

describe("the timeline in words", () => {
  it("says what an empty filter means", () => {
    expect(emptyTimelineInWords("all")).toBe("Nothing has happened in this session yet.");
    expect(emptyTimelineInWords("commands")).toContain("once they end");
  });
});
