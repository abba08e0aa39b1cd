// A session's timeline: what happened to it and who did it, newest first. The workspace opens
// it as a panel; `#/timeline/<id>` shows it as a page (the admin's link from every session).
// Reading it also collects what the session's terminals ran since it was last read.
import { useEffect, useState } from "preact/hooks";
import { api, type Me, type Session, type TimelineEvent } from "../api";
import { stateInWords, timeInWords } from "../lib/format";
import {
  emptyTimelineInWords,
  filterCounts,
  TIMELINE_FILTERS,
  timelineRows,
  type TimelineFilter,
} from "../lib/timeline";
import { toastError } from "../toasts";

/** The entries with their filter and a refresh; read when it first shows. */
export function TimelineView({ sessionId }: { sessionId: string }) {
  const [events, setEvents] = useState<TimelineEvent[] | null>(null);
  const [filter, setFilter] = useState<TimelineFilter>("all");
  const [loading, setLoading] = useState(false);
  const [failure, setFailure] = useState<string | null>(null);
  const [readAt, setReadAt] = useState<Date | null>(null);

  const refresh = async () => {
    setLoading(true);
    try {
      setEvents(await api.timeline(sessionId));
      setReadAt(new Date());
      setFailure(null);
    } catch (err) {
      setFailure(err instanceof Error ? err.message : String(err));
    } finally {
      setLoading(false);
    }
  };

  useEffect(() => {
    refresh();
  }, [sessionId]);

  const counts = events ? filterCounts(events) : null;
  const rows = events ? timelineRows(events, filter) : [];
  return (
    <div class="timeline" data-session={sessionId}>
      <div class="timeline-head">
        <div class="timeline-filters" role="group" aria-label="Show">
          {TIMELINE_FILTERS.map((f) => (
            <button
              key={f.value}
              class={`chip ${filter === f.value ? "active" : ""}`}
              aria-pressed={filter === f.value}
              onClick={() => setFilter(f.value)}
            >
              {f.label}
              {counts && ` (${counts[f.value]})`}
            </button>
          ))}
        </div>
        <span class="spacer" />
        <button onClick={refresh} disabled={loading} title="Read it again, with what the terminals ran since">
          {loading ? "Refreshing…" : "Refresh"}
        </button>
      </div>
      {readAt && <p class="muted timeline-read">As of {timeInWords(readAt)}</p>}
      {failure && <p class="notice form-problem">Could not read the timeline: {failure}</p>}
      {events === null ? (
        !failure && <p class="muted">Loading…</p>
      ) : rows.length === 0 ? (
        <p class="muted">{emptyTimelineInWords(filter)}</p>
      ) : (
        <ol class="timeline-list">
          {rows.map((row) => (
            <li
              key={row.key}
              class={`timeline-entry group-${row.group} ${row.failed ? "failed" : ""}`}
              data-kind={row.kind}
            >
              <time dateTime={row.at.toISOString()} title={row.at.toLocaleString()}>
                {timeInWords(row.at)}
              </time>
              <span class="timeline-who">{row.who}</span>
              <span class="timeline-message">
                {row.failed && <span class="timeline-failed">✗ failed </span>}
                {row.message}
              </span>
              <span class="badge timeline-kind">{row.label}</span>
            </li>
          ))}
        </ol>
      )}
    </div>
  );
}

/** The workspace bar's button and the panel it opens; the panel reads the timeline anew each
 *  time it opens. */
export function TimelinePanel({ sessionId }: { sessionId: string }) {
  const [open, setOpen] = useState(false);
  return (
    <span class="timeline-pop">
      <button aria-expanded={open} onClick={() => setOpen(!open)}>
        Timeline
      </button>
      {open && (
        <div class="card timeline-panel">
          <TimelineView sessionId={sessionId} />
        </div>
      )}
    </span>
  );
}

/** `#/timeline/<id>`: the timeline of a session without opening its workspace (which would
 *  start a shell in it, and wake it if asleep). */
export function TimelinePage({ id, me }: { id: string; me: Me }) {
  const [session, setSession] = useState<Session | null>(null);
  useEffect(() => {
    api.session(id).then(setSession, (err) => toastError(`Session ${id}`, err));
  }, [id]);
  return (
    <section class="timeline-page">
      <div class="card">
        <a href={me.admin ? "#/admin" : "#/"}>{me.admin ? "← Admin" : "← Sessions"}</a>
        <h1>Timeline of {id}</h1>
        {session && (
          <p class="row">
            <span>
              {session.owner}'s {session.template} session
            </span>
            <span class={`badge state-${session.state}`}>{stateInWords(session.state, session.stop_reason)}</span>
            <a class="button" href={`#/s/${id}`}>
              Open its workspace
            </a>
          </p>
        )}
      </div>
      <div class="card">
        <TimelineView sessionId={id} />
      </div>
    </section>
  );
}
