// One class, live: where each learner stands (asked again every 3 s while the page is open), a
// lab started for all of them, a learner's step reset, and their terminal watched read-only.
import { useEffect, useState } from "preact/hooks";
import { api, ApiError, type ClassView, type LabSummary, type MemberStart, type ResetMode } from "../api";
import {
  classRows,
  judgingsInWords,
  maxSessionsInWords,
  memberStartInWords,
  membersInWords,
  startingInWords,
  startSummary,
  updatedInWords,
  type LearnerRow,
} from "../lib/classes";
import { isFinished } from "../lib/labs";
import { toast, toastError } from "../toasts";
import type { Theme } from "../app";
import { useNow } from "./Sessions";
import { ShadowTerminal } from "./ShadowTerminal";

export function ClassPage({ id, theme }: { id: string; theme: Theme }) {
  const [view, setView] = useState<ClassView | undefined>(undefined);
  const [fetchedAt, setFetchedAt] = useState(0);
  // The last poll failed: the table shows what was seen before.
  const [failure, setFailure] = useState<string | null>(null);
  // The class cannot be shown (gone, or another instructor's): polling stops.
  const [refused, setRefused] = useState<string | null>(null);
  // Bumped to ask again now, after a start or a reset, rather than at the next poll.
  const [reloads, setReloads] = useState(0);
  const [labs, setLabs] = useState<LabSummary[] | null>(null);
  const [slug, setSlug] = useState("");
  const [starting, setStarting] = useState(false);
  const [outcome, setOutcome] = useState<{ lab: string; started: MemberStart[] } | null>(null);
  const [resetOpen, setResetOpen] = useState<string | null>(null);
  const [resetting, setResetting] = useState<string | null>(null);
  const [watching, setWatching] = useState<string | null>(null);
  const now = useNow();

  useEffect(() => {
    api.labs().then(
      (all) => {
        setLabs(all);
        setSlug((s) => s || (all[0]?.id ?? ""));
      },
      (err) => {
        setLabs([]);
        toastError("Could not list the labs", err);
      },
    );
  }, []);

  useEffect(() => {
    let stopped = false;
    let timer: number | undefined;
    const poll = async () => {
      try {
        const fresh = await api.classView(id);
        if (stopped) return;
        setView(fresh);
        setFetchedAt(Date.now());
        setFailure(null);
      } catch (err) {
        if (stopped) return;
        if (err instanceof ApiError && err.status === 404) {
          return setRefused("This class does not exist, or is not yours.");
        }
        setFailure(err instanceof Error ? err.message : String(err));
      }
      timer = window.setTimeout(poll, 3000);
    };
    poll();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, [id, reloads]);

  const labTitle = (lab: string) => labs?.find((l) => l.id === lab)?.title ?? lab;

  const start = async () => {
    setStarting(true);
    setOutcome(null);
    try {
      const started = await api.startClassLab(id, slug);
      setOutcome({ lab: slug, started });
      toast(`${labTitle(slug)}: ${startSummary(started).toLowerCase()}`);
      setReloads((n) => n + 1);
    } catch (err) {
      toastError(`Could not start ${labTitle(slug)} for the class`, err);
    } finally {
      setStarting(false);
    }
  };

  const reset = async (row: LearnerRow, mode: ResetMode, step?: number) => {
    const attempt = row.attempt!;
    const restart = mode === "restart";
    if (
      restart &&
      !confirm(
        `Restart ${row.user}'s lab? Their files go back to how they were at the start, and they begin again at step 1.`,
      )
    ) {
      return;
    }
    setResetOpen(null);
    setResetting(row.user);
    try {
      const fresh = await api.resetMember(id, row.user, attempt.lab, mode, step);
      toast(
        restart
          ? `${row.user}'s lab starts over at step 1, their files as they were`
          : mode === "step"
            ? `${row.user}'s step ${fresh.step} is set up again`
            : `${row.user} skipped to step ${fresh.step}: the steps before it are done for them`,
      );
      setReloads((n) => n + 1);
    } catch (err) {
      toastError(`Could not reset ${row.user}'s lab`, err);
    } finally {
      setResetting(null);
    }
  };

  if (refused) {
    return (
      <section class="classes">
        <p class="card">
          {refused} <a href="#/classes">Back to the classes</a>
        </p>
      </section>
    );
  }
  if (!view) {
    return (
      <p class="muted center">
        {failure ? `Could not load the class: ${failure}. Trying again every 3 s…` : "Loading the class…"}
      </p>
    );
  }

  const rows = classRows(view);
  const watched = watching === null ? undefined : rows.find((r) => r.user === watching);
  return (
    <section class="classes">
      <div class="card class-head" data-class={view.id}>
        <a href="#/classes">← Classes</a>
        <h1>{view.name}</h1>
        <div class="lab-facts">
          <span class="badge">{membersInWords(view.members.length)}</span>
          <span class="badge">
            {view.max_sessions == null ? "no session limit" : `at most ${maxSessionsInWords(view.max_sessions)} at once`}
          </span>
          <span class="badge">instructor: {view.instructor}</span>
        </div>
        <p class={`class-live ${failure ? "stale" : ""}`}>
          {failure
            ? `Could not refresh: ${failure}. Trying again every 3 s (last ${updatedInWords(fetchedAt, now)}).`
            : `Live: ${updatedInWords(fetchedAt, now)}`}
        </p>
        <h2>Start a lab for the class</h2>
        <div class="row class-start">
          <select
            aria-label="Lab"
            value={slug}
            disabled={!labs?.length || starting}
            onChange={(e) => setSlug((e.target as HTMLSelectElement).value)}
          >
            {labs === null ? (
              <option value="">Loading the labs…</option>
            ) : labs.length === 0 ? (
              <option value="">No labs on this Berth</option>
            ) : (
              labs.map((l) => (
                <option key={l.id} value={l.id}>
                  {l.title}
                </option>
              ))
            )}
          </select>
          <button class="primary" onClick={start} disabled={!slug || starting}>
            {starting ? "Starting…" : "Start for the class"}
          </button>
          <span class="muted">
            {starting
              ? startingInWords(view.members.length)
              : "Each member gets a lab session of their own; an attempt already under way is left as it is."}
          </span>
        </div>
        {outcome && (
          <div class="class-start-results" data-lab={outcome.lab}>
            <div class="lab-head-row">
              <strong>
                {labTitle(outcome.lab)}: {startSummary(outcome.started)}
              </strong>
              <span class="spacer" />
              <button class="ghost" onClick={() => setOutcome(null)}>
                Dismiss
              </button>
            </div>
            <ul>
              {outcome.started.map((m) => (
                <li key={m.user} data-member={m.user} class={m.attempt ? "started" : "failed"}>
                  <span class="mark">{m.attempt ? "✓" : "✗"}</span> <strong>{m.user}</strong>:{" "}
                  {memberStartInWords(m)}
                </li>
              ))}
            </ul>
          </div>
        )}
      </div>

      {rows.length === 0 ? (
        <p class="muted">This class has no members.</p>
      ) : (
        <table class="card table learners">
          <thead>
            <tr>
              <th>Learner</th>
              <th>Lab</th>
              <th>Progress</th>
              <th>Last check</th>
              <th>Checks run</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {rows.map((row) => {
              const attempt = row.attempt;
              const why = !attempt ? "Nothing started yet" : row.live ? undefined : "Their session has ended";
              return (
                <tr
                  key={row.user}
                  data-learner={row.user}
                  data-state={row.state}
                  data-lab={attempt?.lab}
                  data-step={attempt?.step}
                  class={watching === row.user ? "watched" : ""}
                >
                  <td class="learner-user">{row.user}</td>
                  <td>{attempt ? labTitle(attempt.lab) : <span class="muted">none yet</span>}</td>
                  <td>
                    <span class={`badge learner-progress progress-${row.state}`}>{row.progress}</span>
                  </td>
                  <td class="learner-checks">
                    {!row.checks ? (
                      <span class="muted">{attempt ? "Not checked yet" : ""}</span>
                    ) : row.checks.passed ? (
                      <span class="lab-result passed">✓ {row.checks.words}</span>
                    ) : (
                      <details>
                        <summary class="lab-result failed" title={`Failed: ${row.checks.failed.join(", ")}`}>
                          ✗ {row.checks.words}
                        </summary>
                        <ul class="failed-checks">
                          {row.checks.failed.map((title) => (
                            <li key={title}>✗ {title}</li>
                          ))}
                        </ul>
                      </details>
                    )}
                  </td>
                  <td>{attempt ? judgingsInWords(attempt.judgings) : ""}</td>
                  <td>
                    <div class="actions">
                      <button disabled={!row.live} title={why} onClick={() => setWatching(row.user)}>
                        Watch terminal
                      </button>
                      <div class="reset-pop">
                        <button
                          disabled={!row.live || resetting !== null}
                          title={why}
                          onClick={() => setResetOpen(resetOpen === row.user ? null : row.user)}
                        >
                          {resetting === row.user ? "Resetting…" : "Reset ▾"}
                        </button>
                        {resetOpen === row.user && attempt && (
                          <div class="lab-reset-menu">
                            {!isFinished(attempt) && (
                              <button onClick={() => reset(row, "step", attempt.step)}>Reset this step</button>
                            )}
                            {!isFinished(attempt) &&
                              Array.from({ length: attempt.steps - attempt.step }, (_, i) => attempt.step + 1 + i).map((n) => (
                                <button key={n} onClick={() => reset(row, "skip_to", n)}>
                                  Skip to step {n}
                                </button>
                              ))}
                            <button class="danger" onClick={() => reset(row, "restart")}>
                              Restart the lab
                            </button>
                            <p class="muted">
                              Resetting a step sets up its files again; skipping does the steps before for {row.user};
                              restarting puts every file back as it was at the start.
                            </p>
                          </div>
                        )}
                      </div>
                    </div>
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}

      {watched && (
        <ShadowTerminal
          key={`${watched.user}:${watched.attempt?.session_id}`}
          classId={id}
          user={watched.user}
          sessionId={watched.live && watched.attempt ? watched.attempt.session_id : null}
          theme={theme}
          onClose={() => setWatching(null)}
        />
      )}
    </section>
  );
}
