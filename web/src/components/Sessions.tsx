import { useEffect, useState } from "preact/hooks";
import { api, ApiError, type Me, type QueueStatus, type Session, type Template } from "../api";
import { countdown, stateInWords } from "../lib/format";
import { toast, toastError } from "../toasts";
import { Homes } from "./Homes";

function isQueued(value: Session | QueueStatus): value is QueueStatus {
  return "ticket" in value;
}

/** Re-renders every second, for countdowns. */
export function useNow(): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(timer);
  }, []);
  return now;
}

export function Sessions({ me }: { me: Me }) {
  const [sessions, setSessions] = useState<Session[] | null>(null);
  const [templates, setTemplates] = useState<Template[]>([]);
  const [template, setTemplate] = useState("default");
  const [creating, setCreating] = useState(false);
  const [queued, setQueued] = useState<QueueStatus | null>(null);
  const now = useNow();

  const refresh = () =>
    api.sessions().then(setSessions, (err) => {
      setSessions((s) => s ?? []);
      toastError("Could not list sessions", err);
    });

  useEffect(() => {
    refresh();
    api.templates().then(setTemplates, (err) => toastError("Could not list templates", err));
    const timer = setInterval(refresh, 5000);
    return () => clearInterval(timer);
  }, []);

  // A queued create: follow its ticket until it is admitted or fails.
  useEffect(() => {
    if (!queued || queued.state !== "queued") return;
    const timer = setTimeout(async () => {
      try {
        const status = await api.queue(queued.ticket);
        // Admitted: the answer is the session itself (201), no longer a place in line.
        if (!("ticket" in status)) {
          setQueued(null);
          location.hash = `#/s/${status.id}`;
        } else if (status.state === "failed") {
          setQueued(null);
          toast(`Create failed: ${status.error?.message ?? "unknown error"}`, "error");
        } else {
          setQueued(status);
        }
      } catch (err) {
        setQueued(null);
        toastError("Lost the queued request", err);
      }
    }, 2000);
    return () => clearTimeout(timer);
  }, [queued]);

  const create = async () => {
    setCreating(true);
    try {
      const result = await api.createSession(template);
      if (isQueued(result)) {
        setQueued(result);
        toast("Berth is at capacity: your session is queued and opens when it is ready");
      } else {
        location.hash = `#/s/${result.id}`;
      }
    } catch (err) {
      if (err instanceof ApiError && err.code === "quota_exceeded") {
        toast(`${err.message}. Delete a session to make room.`, "error");
      } else {
        toastError("Could not create a session", err);
      }
    } finally {
      setCreating(false);
    }
  };

  const remove = async (session: Session) => {
    if (!confirm(`Delete session ${session.id}? Its files are gone for good.`)) return;
    try {
      await api.deleteSession(session.id);
      toast(`Deleted ${session.id}`);
      refresh();
    } catch (err) {
      toastError(`Could not delete ${session.id}`, err);
    }
  };

  const sleepOrWake = async (session: Session, action: "hibernate" | "resume") => {
    try {
      toast(action === "hibernate" ? `${session.id} is going to sleep…` : `Waking ${session.id}…`);
      await (action === "hibernate" ? api.hibernateSession(session.id) : api.resumeSession(session.id));
      toast(action === "hibernate" ? `${session.id} is hibernated; opening it wakes it` : `${session.id} is running`);
      refresh();
    } catch (err) {
      toastError(`Could not ${action} ${session.id}`, err);
    }
  };

  const extend = async (session: Session) => {
    try {
      await api.extendSession(session.id, 3600);
      toast(`${session.id} now runs one more hour from now`);
      refresh();
    } catch (err) {
      toastError(`Could not extend ${session.id}`, err);
    }
  };

  return (
    <section class="sessions">
      <div class="card create">
        <h1>Sessions</h1>
        <div class="row">
          <label>
            Template{" "}
            <select value={template} onChange={(e) => setTemplate((e.target as HTMLSelectElement).value)}>
              {(templates.length ? templates : [{ name: "default" } as Template]).map((t) => (
                <option key={t.name} value={t.name}>
                  {t.name}
                  {t.image ? ` (${t.image}, ${t.memory_mb} MB, ${t.cpus} CPU)` : ""}
                </option>
              ))}
            </select>
          </label>
          <button class="primary" onClick={create} disabled={creating || !!queued}>
            {creating ? "Creating…" : "New session"}
          </button>
        </div>
        {queued && (
          <p class="notice">
            Queued: position {queued.position ?? "?"}
            {queued.estimated_wait_seconds !== undefined && `, about ${queued.estimated_wait_seconds} s`}. The workspace opens when
            a slot frees up.
          </p>
        )}
      </div>
      {sessions === null ? (
        <p class="muted">Loading…</p>
      ) : sessions.length === 0 ? (
        <p class="muted">No sessions yet. Create one above.</p>
      ) : (
        <table class="card table">
          <thead>
            <tr>
              <th>Session</th>
              <th>Template</th>
              <th>State</th>
              <th>Expires in</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {sessions.map((s) => (
              <tr key={s.id} data-session={s.id}>
                <td>
                  <a href={`#/s/${s.id}`}>{s.id}</a>
                </td>
                <td>{s.template}</td>
                <td>
                  <span class={`badge state-${s.state}`}>{stateInWords(s.state, s.stop_reason)}</span>
                </td>
                <td title={new Date(s.expires_at).toLocaleString()}>{countdown(s.expires_at, now)}</td>
                <td class="actions">
                  <a class="button" href={`#/s/${s.id}`}>
                    Open
                  </a>
                  <button onClick={() => extend(s)}>+1 h</button>
                  {s.state === "running" && <button onClick={() => sleepOrWake(s, "hibernate")}>Hibernate</button>}
                  {s.state === "hibernated" && <button onClick={() => sleepOrWake(s, "resume")}>Resume</button>}
                  <button class="danger" onClick={() => remove(s)}>
                    Delete
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <Homes owner={me.name} />
    </section>
  );
}
