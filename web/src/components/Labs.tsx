// The labs: hands-on lessons, each worked through in a session of its own, with how far the
// user got in each.
import { useEffect, useState } from "preact/hooks";
import { api, type LabAttempt, type LabSummary } from "../api";
import { labStatus, newestAttempts } from "../lib/labs";
import { toastError } from "../toasts";

export function Labs() {
  const [labs, setLabs] = useState<LabSummary[] | null>(null);
  const [attempts, setAttempts] = useState<Map<string, LabAttempt>>(new Map());

  useEffect(() => {
    api.labs().then(setLabs, (err) => {
      setLabs([]);
      toastError("Could not list the labs", err);
    });
    api.labProgress().then(
      (all) => setAttempts(newestAttempts(all)),
      (err) => toastError("Could not load your progress", err),
    );
  }, []);

  return (
    <section class="labs">
      <div class="card create">
        <h1>Labs</h1>
        <p class="muted">
          Hands-on lessons in a workspace of their own: follow the steps, press Check to have your work checked, and ask for
          a hint when stuck.
        </p>
      </div>
      {labs === null ? (
        <p class="muted">Loading…</p>
      ) : labs.length === 0 ? (
        <p class="muted">No labs on this Berth yet.</p>
      ) : (
        <div class="lab-cards">
          {labs.map((lab) => {
            const status = labStatus(attempts.get(lab.id));
            return (
              <article key={lab.id} class="card lab-card" data-lab={lab.id}>
                <h2>
                  <a href={`#/labs/${lab.id}`}>{lab.title}</a>
                </h2>
                <div class="lab-facts">
                  <span class={`badge difficulty-${lab.difficulty}`}>{lab.difficulty}</span>
                  <span class="badge">{lab.step_count === 1 ? "1 step" : `${lab.step_count} steps`}</span>
                  {lab.docker && <span class="badge">uses Docker</span>}
                </div>
                <p>{lab.summary}</p>
                <div class="row lab-card-foot">
                  <span class="muted lab-status">{status.words}</span>
                  <span class="spacer" />
                  <a class="button primary" href={`#/labs/${lab.id}`}>
                    {status.action}
                  </a>
                </div>
              </article>
            );
          })}
        </div>
      )}
    </section>
  );
}
