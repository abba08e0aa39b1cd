// Every user's sessions for the admin, creates waiting for room first: put one to sleep, wake
// it, delete it, read its timeline.
import { useEffect, useState } from "preact/hooks";
import { api, type QueuedCreate, type Session } from "../api";
import { queuedInWords, sessionActions, sortSessions } from "../lib/admin";
import { stateInWords, timeInWords } from "../lib/format";
import { toast, toastError } from "../toasts";

/** `queued`: the creates waiting for room, from the capacity; `onChange`: after a session's
 *  state was changed here, for the capacity to be read again. */
export function AdminSessions({ queued, onChange }: { queued: QueuedCreate[]; onChange: () => void }) {
  const [sessions, setSessions] = useState<Session[] | null>(null);
  // Stopped and failed sessions too, with why they ended.
  const [ended, setEnded] = useState(false);

  const load = () =>
    api.allSessions(ended).then(
      (all) => setSessions(sortSessions(all)),
      (err) => {
        setSessions((s) => s ?? []);
        toastError("Could not list the sessions", err);
      },
    );

  useEffect(() => {
    load();
    const timer = setInterval(load, 5000);
    return () => clearInterval(timer);
  }, [ended]);

  const act = async (session: Session, action: "hibernate" | "resume" | "delete") => {
    const name = `${session.owner}'s session ${session.id}`;
    if (action === "delete" && !confirm(`Delete ${name}? Its files are gone for good.`)) return;
    try {
      if (action === "hibernate") {
        toast(`${name} is going to sleep…`);
        await api.hibernateSession(session.id);
        toast(`${name} is hibernated`);
      } else if (action === "resume") {
        toast(`Waking ${name}…`);
        await api.resumeSession(session.id);
        toast(`${name} is running`);
      } else {
        await api.deleteSession(session.id);
        toast(`Deleted ${name}`);
      }
    } catch (err) {
      toastError(`Could not ${action} ${name}`, err);
    }
    load();
    onChange();
  };

  return (
    <section class="card admin-sessions">
      <div class="row section-head">
        <h2>All sessions</h2>
        <span class="spacer" />
        <label>
          <input type="checkbox" checked={ended} onChange={(e) => setEnded((e.target as HTMLInputElement).checked)} /> Show
          ended sessions
        </label>
      </div>
      {sessions === null ? (
        <p class="muted">Loading…</p>
      ) : sessions.length === 0 && queued.length === 0 ? (
        <p class="muted">{ended ? "No sessions at all yet." : "No session is live or asleep."}</p>
      ) : (
        <table class="table">
          <thead>
            <tr>
              <th>Session</th>
              <th>Owner</th>
              <th>Template</th>
              <th>State</th>
              <th>Last activity</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {queued.map((q) => (
              <tr key={q.ticket} data-ticket={q.ticket}>
                <td class="muted" title="Not a session yet: a create waiting for room">
                  {q.ticket}
                </td>
                <td>{q.owner}</td>
                <td>{q.template}</td>
                <td>
                  <span class="badge state-queued">{queuedInWords(q)}</span>
                </td>
                <td />
                <td />
              </tr>
            ))}
            {sessions.map((s) => {
              const can = sessionActions(s);
              return (
                <tr key={s.id} data-session={s.id}>
                  <td>{s.id}</td>
                  <td>{s.owner}</td>
                  <td>{s.template}</td>
                  <td>
                    <span class={`badge state-${s.state}`}>{stateInWords(s.state, s.stop_reason)}</span>
                  </td>
                  <td title={new Date(s.last_activity).toLocaleString()}>{timeInWords(new Date(s.last_activity))}</td>
                  <td class="actions">
                    <a class="button" href={`#/timeline/${s.id}`}>
                      Timeline
                    </a>
                    {can.hibernate && <button onClick={() => act(s, "hibernate")}>Hibernate</button>}
                    {can.resume && <button onClick={() => act(s, "resume")}>Resume</button>}
                    {can.remove && (
                      <button class="danger" onClick={() => act(s, "delete")}>
                        Delete
                      </button>
                    )}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
    </section>
  );
}
