// A session's timeline as its panel shows it: newest first, grouped for the filter, failed
// commands told apart; unit-tested in test/timeline.test.ts.
import type { TimelineEvent } from "../api";

export type TimelineGroup = "lifecycle" | "commands" | "files" | "ports" | "other";
/** What the filter shows: one group, or everything. */
export type TimelineFilter = Exclude<TimelineGroup, "other"> | "all";

export const TIMELINE_FILTERS: { value: TimelineFilter; label: string }[] = [
  { value: "all", label: "All" },
  { value: "lifecycle", label: "Lifecycle" },
  { value: "commands", label: "Commands" },
  { value: "files", label: "Files" },
  { value: "ports", label: "Ports" },
];

const GROUPS: Record<string, TimelineGroup> = {
  created: "lifecycle",
  running: "lifecycle",
  idle_warning: "lifecycle",
  hibernated: "lifecycle",
  restored: "lifecycle",
  stopped: "lifecycle",
  failed: "lifecycle",
  restarted: "lifecycle",
  oom: "lifecycle",
  recovered: "lifecycle",
  hibernate_failed: "lifecycle",
  compacted: "lifecycle",
  // Someone asking for a change of state is told with the change it asked for.
  hibernate_requested: "lifecycle",
  resume_requested: "lifecycle",
  delete_requested: "lifecycle",
  extended: "lifecycle",
  exec: "commands",
  process_started: "commands",
  process_exited: "commands",
  command: "commands",
  file_written: "files",
  file_deleted: "files",
  file_moved: "files",
  directory_created: "files",
  files_uploaded: "files",
  // A snapshot keeps the session's files as they are.
  snapshot: "files",
  port_opened: "ports",
  port_closed: "ports",
};

/** What the session itself reports (its agent saw it): nobody in particular did it. */
const SEEN_INSIDE = new Set(["command", "process_exited", "port_opened", "port_closed", "custom", "journal_overflow"]);

/** Who an entry says did it: its actor; else the session, for what happened inside it; else Berth. */
export function whoOf(event: TimelineEvent): string {
  if (event.actor) return event.actor;
  return SEEN_INSIDE.has(event.kind) ? "in the session" : "Berth";
}

/** The group a kind belongs to; a kind this page does not know (a newer server's) is "other". */
export function groupOf(kind: string): TimelineGroup {
  return GROUPS[kind] ?? "other";
}

/** A command's exit code, when the entry has one (`exec`, `command`, `process_exited`). */
export function exitCodeOf(event: TimelineEvent): number | null {
  const data = event.data as { exit_code?: unknown } | null | undefined;
  return typeof data?.exit_code === "number" ? data.exit_code : null;
}

/** One line of the panel. */
export interface TimelineRow {
  key: string;
  at: Date;
  kind: string;
  /** The kind in words: `file_written` is "file written". */
  label: string;
  group: TimelineGroup;
  /** Who did it: a user's name, `admin`, "in the session" or Berth itself. */
  who: string;
  message: string;
  /** A command that exited with a code other than 0. */
  failed: boolean;
}

/** The events (oldest first, as the server lists them) that `filter` shows, newest first. */
export function timelineRows(events: TimelineEvent[], filter: TimelineFilter): TimelineRow[] {
  const rows = events.map((event, i): TimelineRow => {
    const code = exitCodeOf(event);
    return {
      // The position keeps two entries of the same moment and kind apart.
      key: `${i}-${event.at}-${event.kind}`,
      at: new Date(event.at),
      kind: event.kind,
      label: event.kind.replace(/_/g, " "),
      group: groupOf(event.kind),
      who: whoOf(event),
      message: event.message,
      failed: code !== null && code !== 0,
    };
  });
  return rows.filter((row) => filter === "all" || row.group === filter).reverse();
}

/** How many entries each filter shows, for its label. */
export function filterCounts(events: TimelineEvent[]): Record<TimelineFilter, number> {
  const counts: Record<TimelineFilter, number> = { all: events.length, lifecycle: 0, commands: 0, files: 0, ports: 0 };
  for (const event of events) {
    const group = groupOf(event.kind);
    if (group !== "other") counts[group] += 1;
  }
  return counts;
}

/** What an empty list says. */
export function emptyTimelineInWords(filter: TimelineFilter): string {
  const what: Record<TimelineFilter, string> = {
    all: "Nothing has happened in this session yet.",
    lifecycle: "No changes of state yet.",
    commands: "No commands yet: lines run in a terminal show here once they end.",
    files: "No files written, moved or deleted yet.",
    ports: "No server has listened on a port yet.",
  };
  return what[filter];
}
