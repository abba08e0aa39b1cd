// A lab's steps beside its workspace: the step to do, Check (the judge runs the step's checks
// in the session), hints and explanations, resets, and earlier steps to read again.
import { useEffect, useState } from "preact/hooks";
import { api, type JudgeResult, type Lab, type LabAttempt, type ResetMode } from "../api";
import {
  afterJudging,
  attemptSeconds,
  checkingInWords,
  checkSummary,
  durationInWords,
  hintLabel,
  hintsLeftInWords,
  isFinished,
  metricsInWords,
  progressInWords,
  savedHints,
  saveHints,
  type HintEntry,
} from "../lib/labs";
import { toast, toastError } from "../toasts";
import { useNow } from "./Sessions";

interface Props {
  lab: Lab;
  attempt: LabAttempt;
  onAttempt: (attempt: LabAttempt) => void;
  /** The lab started over with its files as they were at the start: the workspace reopens. */
  onRestart: (attempt: LabAttempt) => void;
}

export function LabSteps({ lab, attempt, onAttempt, onRestart }: Props) {
  const slug = lab.id;
  const total = lab.steps.length;
  const finished = isFinished(attempt);
  const current = Math.min(attempt.step, total);
  // An earlier step read again; null is the step being worked on (or, once done, the summary).
  const [viewing, setViewing] = useState<number | null>(null);
  const [results, setResults] = useState<Record<number, JudgeResult>>(() =>
    attempt.last_result ? { [attempt.last_result.step]: attempt.last_result } : {},
  );
  const [judgingSince, setJudgingSince] = useState<number | null>(null);
  const [justPassed, setJustPassed] = useState<number | null>(null);
  const [hints, setHints] = useState<HintEntry[]>(() => savedHints(attempt.id));
  const [question, setQuestion] = useState("");
  const [asking, setAsking] = useState(false);
  const [pasted, setPasted] = useState("");
  const [explaining, setExplaining] = useState(false);
  const [resetOpen, setResetOpen] = useState(false);
  const [resetting, setResetting] = useState(false);
  const now = useNow();

  useEffect(() => {
    saveHints(attempt.id, hints);
  }, [hints]);

  const check = async () => {
    setJudgingSince(Date.now());
    setJustPassed(null);
    try {
      const result = await api.judge(slug);
      setResults((all) => ({ ...all, [result.step]: result }));
      const next = afterJudging(attempt, result);
      if (result.completed) {
        toast("Lab complete: every step passed");
      } else if (next.step !== attempt.step) {
        setJustPassed(result.step);
        toast(`Step ${result.step} passed: on to step ${next.step}`);
      }
      setViewing(null);
      onAttempt(next);
      // The server's own account of the attempt (its duration, its counts) follows.
      api.activeAttempt(slug).then((fresh) => fresh && onAttempt(fresh), () => {});
    } catch (err) {
      toastError("Checking failed", err);
    } finally {
      setJudgingSince(null);
    }
  };

  const askHint = async () => {
    const asked = question.trim();
    setAsking(true);
    try {
      const hint = await api.hint(slug, asked || undefined);
      setHints((all) => [...all, { ...hint, asked: asked || undefined }]);
      setQuestion("");
    } catch (err) {
      toastError("No hint", err);
    } finally {
      setAsking(false);
    }
  };

  const explain = async () => {
    const text = pasted.trim();
    if (!text) return;
    setExplaining(true);
    try {
      const answer = await api.explain(slug, text);
      setHints((all) => [...all, { ...answer, asked: text }]);
      setPasted("");
    } catch (err) {
      toastError("No explanation", err);
    } finally {
      setExplaining(false);
    }
  };

  const reset = async (mode: ResetMode, step?: number) => {
    const restart = mode === "restart";
    if (restart && !confirm("Restart the lab? Your files go back to how they were at the start, and you begin again at step 1.")) {
      return;
    }
    setResetOpen(false);
    setResetting(true);
    try {
      const fresh = await api.resetLab(slug, mode, step);
      if (restart) {
        saveHints(attempt.id, []);
        toast("The lab starts over: your files are back as they were, and you are on step 1");
        onRestart(fresh);
        return;
      }
      setViewing(null);
      setJustPassed(null);
      setResults((all) => Object.fromEntries(Object.entries(all).filter(([n]) => Number(n) < fresh.step)));
      toast(
        mode === "step"
          ? `Step ${fresh.step} is set up again`
          : `Skipped to step ${fresh.step}: the steps before it are done for you`,
      );
      onAttempt(fresh);
    } catch (err) {
      toastError(restart ? "Could not restart the lab" : "Could not reset", err);
    } finally {
      setResetting(false);
    }
  };

  const shown = viewing ?? (finished ? null : current);
  const step = shown === null ? null : lab.steps[shown - 1];
  const readOnly = finished || shown !== current;
  const result = step ? results[step.number] : undefined;
  const stepHints = step ? hints.filter((h) => h.step === step.number) : [];
  // The lab's own hints come before the assistant's: the latest of them says how many are left.
  const lastStatic = stepHints.filter((h) => h.source === "static").pop();
  const remaining = lastStatic ? lastStatic.remaining_static : Math.max(0, (step?.hints ?? 0) - attempt.hints_shown);
  const seconds = attemptSeconds(attempt);
  const busy = judgingSince !== null || resetting;

  return (
    <div class="lab-panel" data-lab={lab.id} data-step={attempt.step} data-judgings={attempt.judgings}>
      <div class="lab-head">
        <div class="lab-head-row">
          <a href="#/labs">← Labs</a>
          <span class="spacer" />
          <button onClick={() => setResetOpen(!resetOpen)} disabled={busy}>
            {resetting ? "Resetting…" : "Reset ▾"}
          </button>
        </div>
        {resetOpen && (
          <div class="lab-reset-menu">
            {!finished && <button onClick={() => reset("step", current)}>Reset this step</button>}
            {!finished &&
              lab.steps
                .filter((s) => s.number > current)
                .map((s) => (
                  <button key={s.id} onClick={() => reset("skip_to", s.number)}>
                    Skip to step {s.number}
                  </button>
                ))}
            <button class="danger" onClick={() => reset("restart")}>
              Restart the lab
            </button>
            <p class="muted">
              Resetting a step sets up its files again; skipping does the steps before for you; restarting puts every file
              back as it was at the start.
            </p>
          </div>
        )}
        <h2>{lab.title}</h2>
        <div class="lab-progress">
          <span>{progressInWords(attempt)}</span>
          <progress max={total} value={Math.min(attempt.step - 1, total)} />
        </div>
        <ol class="lab-step-list">
          {lab.steps.map((s) => {
            const done = finished || s.number < attempt.step;
            const state = done ? "done" : s.number === current ? "current" : "ahead";
            return (
              <li key={s.id} class={`${state} ${s.number === shown ? "shown" : ""}`}>
                <button
                  class="ghost"
                  disabled={state === "ahead"}
                  title={state === "ahead" ? `Pass step ${current} first` : undefined}
                  onClick={() => setViewing(state === "current" ? null : s.number)}
                >
                  <span class="mark">{done ? "✓" : state === "current" ? "▸" : "○"}</span> {s.number}. {s.title}
                </button>
              </li>
            );
          })}
        </ol>
      </div>

      {justPassed !== null && !finished && viewing === null && (
        <p class="notice lab-passed">
          ✓ Step {justPassed} passed. On to step {current}: {lab.steps[current - 1].title}.
        </p>
      )}

      {!step ? (
        <div class="lab-complete">
          <h3>✓ Lab complete</h3>
          <p>
            You passed all {total} steps{seconds === null ? "" : ` in ${durationInWords(seconds)}`}. Pick a step above to
            read it again.
          </p>
          <a class="button" href="#/labs">
            Back to the labs
          </a>
        </div>
      ) : (
        <>
          <h3 class="lab-step-title">
            Step {step.number}: {step.title}
          </h3>
          {readOnly && (
            <p class="notice">
              You passed this step; this is to read again.{" "}
              <button onClick={() => setViewing(null)}>{finished ? "Back to the summary" : `Back to step ${current}`}</button>
            </p>
          )}
          <div class="lab-text" dangerouslySetInnerHTML={{ __html: step.html }} />

          <section class="lab-section">
            <h4>Checks</h4>
            {!readOnly && (
              <div class="lab-actions">
                <button class="primary" onClick={check} disabled={busy}>
                  Check
                </button>
                {judgingSince !== null && (
                  <span class="muted lab-judging">{checkingInWords(lab.docker, (now - judgingSince) / 1000)}</span>
                )}
              </div>
            )}
            {result && (
              <p class={`lab-result ${result.passed ? "passed" : "failed"}`}>
                {checkSummary(result)}{" "}
                <span class="muted">
                  (checked at {new Date(result.judged_at).toLocaleTimeString()}, took {durationInWords(result.duration_ms / 1000)})
                </span>
              </p>
            )}
            <ul class="checks">
              {result
                ? result.checks.map((c) => (
                    <li key={c.id} class={`check ${c.passed ? "passed" : "failed"}`}>
                      <span class="mark">{c.passed ? "✓" : "✗"}</span>
                      <div>
                        <strong>{c.title}</strong>
                        <div class="check-message">{c.message}</div>
                        {c.hint && <div class="check-hint">Try: {c.hint}</div>}
                        {metricsInWords(c.metrics).length > 0 && (
                          <div class="muted">{metricsInWords(c.metrics).join(" · ")}</div>
                        )}
                      </div>
                    </li>
                  ))
                : step.checks.map((c) => (
                    <li key={c.id} class="check pending">
                      <span class="mark">○</span>
                      <div>
                        <strong>{c.title}</strong>
                        <div class="muted">{readOnly ? "passed" : "not checked yet"}</div>
                      </div>
                    </li>
                  ))}
            </ul>
          </section>

          <section class="lab-section">
            <h4>Hints</h4>
            {stepHints.length === 0 ? (
              <p class="muted">{readOnly ? "You asked for no hints on this step." : "No hints yet: give it a try, and ask when stuck."}</p>
            ) : (
              <ul class="lab-hints">
                {stepHints.map((h, i) => (
                  <li key={i} class={`lab-hint ${h.source}`}>
                    <span class="badge">{hintLabel(h)}</span>
                    {h.asked && <blockquote>{h.asked}</blockquote>}
                    <div class="lab-hint-text">{h.text}</div>
                  </li>
                ))}
              </ul>
            )}
            {!readOnly && (
              <>
                <div class="lab-actions">
                  <input
                    class="lab-question"
                    placeholder="Your question (optional)"
                    maxLength={2000}
                    value={question}
                    onInput={(e) => setQuestion((e.target as HTMLInputElement).value)}
                    onKeyDown={(e) => e.key === "Enter" && !asking && askHint()}
                  />
                  <button onClick={askHint} disabled={asking}>
                    {asking ? "Asking…" : "Get a hint"}
                  </button>
                </div>
                <p class="muted">{hintsLeftInWords(remaining)}</p>
              </>
            )}
          </section>

          {!readOnly && (
            <section class="lab-section">
              <h4>Explain</h4>
              <textarea
                class="lab-paste"
                rows={3}
                maxLength={2000}
                placeholder="Paste an error, or a line you don't understand"
                value={pasted}
                onInput={(e) => setPasted((e.target as HTMLTextAreaElement).value)}
              />
              <button onClick={explain} disabled={explaining || !pasted.trim()}>
                {explaining ? "Explaining…" : "Explain"}
              </button>
            </section>
          )}
        </>
      )}
    </div>
  );
}
