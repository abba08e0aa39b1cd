// `#/admin`: the admin's page. How full the host is and who waits for room, the users, every
// session, the persistent homes. The header links here only for the admin; the server refuses
// everyone else anyway.
import { useEffect, useState } from "preact/hooks";
import { api, type Capacity, type Me } from "../api";
import { capacityGauge, poolInWords, statesInWords } from "../lib/admin";
import { AdminSessions } from "./AdminSessions";
import { AdminUsers } from "./AdminUsers";
import { Homes } from "./Homes";

export function Admin({ me }: { me: Me }) {
  if (!me.admin) {
    return (
      <section class="admin">
        <div class="card">
          <h1>Admin</h1>
          <p>This page is for Berth's admin: log in with the admin token to see it.</p>
        </div>
      </section>
    );
  }
  return <AdminPage />;
}

function AdminPage() {
  const [capacity, setCapacity] = useState<Capacity | null>(null);
  const [failure, setFailure] = useState<string | null>(null);

  // Read every few seconds, quietly: a failure is said in the capacity's card, not in a toast
  // every time.
  const loadCapacity = () =>
    api.capacity().then(
      (c) => {
        setCapacity(c);
        setFailure(null);
      },
      (err) => setFailure(err instanceof Error ? err.message : String(err)),
    );

  useEffect(() => {
    loadCapacity();
    const timer = setInterval(loadCapacity, 5000);
    return () => clearInterval(timer);
  }, []);

  return (
    <section class="admin">
      <div class="card">
        <h1>Admin</h1>
        <p class="muted">
          Everyone's users, sessions and homes. What cannot be undone (deleting, disabling) asks first.
        </p>
      </div>
      <CapacityCard capacity={capacity} failure={failure} />
      <AdminUsers />
      <AdminSessions queued={capacity?.queued ?? []} onChange={loadCapacity} />
      <Homes />
    </section>
  );
}

function CapacityCard({ capacity, failure }: { capacity: Capacity | null; failure: string | null }) {
  if (!capacity) {
    return (
      <section class="card capacity">
        <h2>Capacity</h2>
        {failure ? (
          <p class="notice form-problem">Could not read the capacity: {failure}</p>
        ) : (
          <p class="muted">Loading…</p>
        )}
      </section>
    );
  }
  const gauge = capacityGauge(capacity.live, capacity.max_sessions);
  const states = statesInWords(capacity.by_state);
  return (
    <section class="card capacity">
      <h2>Capacity</h2>
      {failure && <p class="notice form-problem">Could not read the capacity again: {failure}. What follows is older.</p>}
      <div
        class={`capacity-bar level-${gauge.level}`}
        role="progressbar"
        aria-label="Live sessions"
        aria-valuemin={0}
        aria-valuemax={capacity.max_sessions}
        aria-valuenow={capacity.live}
      >
        <div class="capacity-fill" style={{ width: `${gauge.fraction * 100}%` }} />
      </div>
      <p class="capacity-words">{gauge.words}</p>
      <div class="capacity-parts">
        <div>
          <h3>By state</h3>
          {states.length === 0 ? (
            <p class="muted">No sessions yet.</p>
          ) : (
            <ul class="state-counts">
              {states.map((s) => (
                <li key={s.state}>
                  <span class={`badge state-${s.state}`}>{s.words}</span>
                </li>
              ))}
            </ul>
          )}
        </div>
        <div>
          <h3>Queue</h3>
          {capacity.queued.length === 0 ? (
            <p class="muted">Nobody waits for room.</p>
          ) : (
            <ol class="capacity-queue">
              {capacity.queued.map((q) => (
                <li key={q.ticket} data-ticket={q.ticket}>
                  {q.owner}'s {q.template} session
                </li>
              ))}
            </ol>
          )}
        </div>
        <div>
          <h3>Warm pools</h3>
          {capacity.pools.length === 0 ? (
            <p class="muted">No template keeps sessions warm.</p>
          ) : (
            <ul class="pools">
              {capacity.pools.map((p) => (
                <li key={p.template} data-pool={p.template}>
                  <strong>{p.template}</strong>: {poolInWords(p)}
                </li>
              ))}
            </ul>
          )}
        </div>
      </div>
    </section>
  );
}
