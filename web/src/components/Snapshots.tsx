// A session's named snapshots: take one, fork a new session from one (with the session's
// template), delete one. A fork opens in its own workspace.
import { useState } from "preact/hooks";
import { api, type Snapshot } from "../api";
import { toast, toastError } from "../toasts";

export function Snapshots({ sessionId, template }: { sessionId: string; template: string }) {
  const [open, setOpen] = useState(false);
  const [snapshots, setSnapshots] = useState<Snapshot[] | null>(null);

  const load = async () => {
    try {
      setSnapshots(await api.snapshots(sessionId));
    } catch (err) {
      toastError("Could not list the snapshots", err);
    }
  };
  const toggle = () => {
    if (!open) load();
    setOpen(!open);
  };
  const take = async () => {
    const name = prompt("Name of the snapshot", `snapshot ${new Date().toLocaleString()}`);
    if (!name) return;
    try {
      const snapshot = await api.createSnapshot(sessionId, name);
      toast(`Snapshot "${snapshot.name}" taken (the session paused ${snapshot.pause_ms ?? 0} ms)`);
      load();
    } catch (err) {
      toastError("Could not take a snapshot", err);
    }
  };
  const fork = async (snapshot: Snapshot) => {
    try {
      const forked = await api.forkSnapshot(snapshot.id, template);
      toast(`Forked "${snapshot.name}" into ${forked.id}`);
      location.hash = `#/s/${forked.id}`;
    } catch (err) {
      toastError(`Could not fork "${snapshot.name}"`, err);
    }
  };
  const remove = async (snapshot: Snapshot) => {
    if (!confirm(`Delete snapshot "${snapshot.name}"? Sessions forked from it keep their files.`)) return;
    try {
      await api.deleteSnapshot(snapshot.id);
      load();
    } catch (err) {
      toastError(`Could not delete "${snapshot.name}"`, err);
    }
  };

  return (
    <span class="snapshots">
      <button onClick={toggle}>Snapshots</button>
      {open && (
        <div class="card snapshots-panel">
          <button class="primary" onClick={take}>
            Take a snapshot
          </button>
          {snapshots === null ? (
            <p class="muted">Loading…</p>
          ) : snapshots.length === 0 ? (
            <p class="muted">No snapshots yet. One keeps this session's files as they are now.</p>
          ) : (
            <ul>
              {snapshots.map((s) => (
                <li key={s.id} data-snapshot={s.id}>
                  <span title={s.id}>{s.name}</span>{" "}
                  <span class="muted">{new Date(s.created_at).toLocaleString()}</span>{" "}
                  {s.size_bytes != null && (
                    <span class="muted">{(s.size_bytes / 1e6).toFixed(1)} MB </span>
                  )}
                  <button onClick={() => fork(s)}>Fork</button>{" "}
                  <button class="danger" onClick={() => remove(s)}>
                    Delete
                  </button>
                </li>
              ))}
            </ul>
          )}
        </div>
      )}
    </span>
  );
}
