// One lab: its introduction until the user starts it, then its session's workspace with the
// steps panel on the left. An attempt still under way is picked up where it was left.
import { useEffect, useState } from "preact/hooks";
import { api, ApiError, type Lab, type LabAttempt } from "../api";
import { durationInWords } from "../lib/labs";
import { toast, toastError } from "../toasts";
import type { Theme } from "../app";
import { LabSteps } from "./LabSteps";
import { Workspace } from "./Workspace";

export function LabPage({ slug, theme }: { slug: string; theme: Theme }) {
  const [lab, setLab] = useState<Lab | null | undefined>(undefined);
  const [attempt, setAttempt] = useState<LabAttempt | null | undefined>(undefined);
  const [starting, setStarting] = useState(false);
  // A restart puts the files back as they were: the workspace opens afresh on them.
  const [restarts, setRestarts] = useState(0);

  useEffect(() => {
    api.lab(slug).then(setLab, (err) => {
      setLab(null);
      toastError(`Lab ${slug}`, err);
    });
    api.activeAttempt(slug).then(setAttempt, (err) => {
      setAttempt(null);
      toastError("Could not look for your attempt at this lab", err);
    });
  }, [slug]);

  // An instructor may reset or move the attempt: look again now and then, and follow.
  useEffect(() => {
    if (!attempt) return;
    const timer = setInterval(() => {
      api.activeAttempt(slug).then((fresh) => {
        if (!fresh || (fresh.step === attempt.step && fresh.session_id === attempt.session_id)) return;
        // A step further on may be the learner's own pass, still being set up: said by the
        // steps panel. Going back or to a new session is someone else's doing.
        if (fresh.step < attempt.step || fresh.session_id !== attempt.session_id) {
          toast(`Your lab was reset: you are at step ${fresh.step} of ${fresh.steps}`);
        }
        setAttempt(fresh);
      }, () => {});
    }, 10000);
    return () => clearInterval(timer);
  }, [slug, attempt?.step, attempt?.session_id]);

  const start = async () => {
    setStarting(true);
    try {
      setAttempt(await api.startLab(slug));
    } catch (err) {
      if (err instanceof ApiError && err.code === "quota_exceeded") {
        toast(`Could not start the lab: ${err.message}. Delete a session to make room.`, "error");
      } else {
        toastError("Could not start the lab", err);
      }
    } finally {
      setStarting(false);
    }
  };

  if (lab === undefined || attempt === undefined) return <p class="muted center">Loading the lab…</p>;
  if (lab === null) {
    return (
      <section class="labs">
        <p class="card">
          This lab could not be loaded. <a href="#/labs">Back to the labs</a>
        </p>
      </section>
    );
  }
  if (attempt) {
    return (
      <Workspace
        key={`${attempt.session_id}:${restarts}`}
        id={attempt.session_id}
        theme={theme}
        aside={
          <LabSteps
            key={attempt.id}
            lab={lab}
            attempt={attempt}
            onAttempt={setAttempt}
            onRestart={(fresh) => {
              setAttempt(fresh);
              setRestarts((n) => n + 1);
            }}
          />
        }
      />
    );
  }
  return (
    <section class="labs">
      <div class="card lab-intro" data-lab={lab.id}>
        <a href="#/labs">← Labs</a>
        <h1>{lab.title}</h1>
        <div class="lab-facts">
          <span class={`badge difficulty-${lab.difficulty}`}>{lab.difficulty}</span>
          <span class="badge">{lab.steps.length === 1 ? "1 step" : `${lab.steps.length} steps`}</span>
          {lab.docker && <span class="badge">uses Docker</span>}
          <span class="badge">workspace for {durationInWords(lab.ttl_minutes * 60)}</span>
        </div>
        <p>{lab.summary}</p>
        <h2>Steps</h2>
        <ol class="lab-intro-steps">
          {lab.steps.map((step) => (
            <li key={step.id}>{step.title}</li>
          ))}
        </ol>
        <div class="row">
          <button class="primary" onClick={start} disabled={starting}>
            {starting ? "Starting your lab session…" : "Start lab"}
          </button>
          {starting && <span class="muted">A workspace is being made for this lab; it takes about ten seconds.</span>}
        </div>
      </div>
    </section>
  );
}
