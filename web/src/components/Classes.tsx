// An instructor's classes: rosters of learners to start labs for and follow live. The admin
// sees every instructor's.
import { useEffect, useState } from "preact/hooks";
import { api, ApiError, type Class, type Me } from "../api";
import { maxSessionsInWords, membersInWords, parseMaxSessions, parseMembers } from "../lib/classes";
import { toast, toastError } from "../toasts";

export function Classes({ me }: { me: Me }) {
  const [classes, setClasses] = useState<Class[] | null>(null);
  // The server refused: the caller is not an instructor.
  const [forbidden, setForbidden] = useState(false);
  const [name, setName] = useState("");
  const [members, setMembers] = useState("");
  const [maxSessions, setMaxSessions] = useState("");
  // What is wrong with the form, in words, until it is sent again.
  const [problem, setProblem] = useState<string | null>(null);
  const [creating, setCreating] = useState(false);

  const refresh = () =>
    api.classes().then(setClasses, (err) => {
      setClasses((c) => c ?? []);
      if (err instanceof ApiError && err.code === "forbidden") setForbidden(true);
      else toastError("Could not list your classes", err);
    });

  useEffect(() => {
    refresh();
  }, []);

  const create = async (e: Event) => {
    e.preventDefault();
    const roster = parseMembers(members);
    const limit = parseMaxSessions(maxSessions);
    const wrong = !name.trim()
      ? "Give the class a name"
      : roster.length === 0
        ? "Add its members: their user names, separated by commas or spaces"
        : (limit.error ?? null);
    setProblem(wrong);
    if (wrong) return;
    setCreating(true);
    try {
      const made = await api.createClass({ name: name.trim(), members: roster, max_sessions: limit.value });
      toast(`Class ${made.name} created with ${membersInWords(made.members.length)}`);
      setName("");
      setMembers("");
      setMaxSessions("");
      refresh();
    } catch (err) {
      // An unknown member is named in the message: said beside the form, where it is fixed.
      if (err instanceof ApiError && err.code === "invalid_request") {
        setProblem(`Could not create the class: ${err.message}`);
      } else if (err instanceof ApiError && err.code === "forbidden") {
        setForbidden(true);
      } else {
        toastError("Could not create the class", err);
      }
    } finally {
      setCreating(false);
    }
  };

  const remove = async (c: Class) => {
    if (!confirm(`Delete the class ${c.name}? This cannot be undone.`)) return;
    try {
      await api.deleteClass(c.id);
      toast(`Deleted the class ${c.name}`);
      refresh();
    } catch (err) {
      toastError(`Could not delete the class ${c.name}`, err);
    }
  };

  if (forbidden) {
    return (
      <section class="classes">
        <div class="card create">
          <h1>Classes</h1>
          <p>Classes are for instructors: ask your Berth's admin to make you one.</p>
        </div>
      </section>
    );
  }
  return (
    <section class="classes">
      <form class="card create class-form" onSubmit={create}>
        <h1>Classes</h1>
        <p class="muted">
          A class is a roster of learners: start a lab for all of them at once, follow their progress live, reset a step for
          someone stuck, and watch their terminal.
        </p>
        <div class="class-fields">
          <label>
            Name
            <input
              name="name"
              maxLength={64}
              placeholder="Docker basics, Monday group"
              value={name}
              onInput={(e) => setName((e.target as HTMLInputElement).value)}
            />
          </label>
          <label class="class-members">
            Members
            <input
              name="members"
              placeholder="alice, bob, carol"
              value={members}
              onInput={(e) => setMembers((e.target as HTMLInputElement).value)}
            />
          </label>
          <label>
            Max sessions
            <input
              name="max_sessions"
              type="number"
              min={1}
              placeholder="no limit"
              value={maxSessions}
              onInput={(e) => setMaxSessions((e.target as HTMLInputElement).value)}
            />
          </label>
        </div>
        <div class="row">
          <button class="primary" type="submit" disabled={creating}>
            {creating ? "Creating…" : "Create class"}
          </button>
          <span class="muted">Members are user names; max sessions caps how many of their lab sessions live at once.</span>
        </div>
        {problem && <p class="notice form-problem">{problem}</p>}
      </form>
      {classes === null ? (
        <p class="muted">Loading…</p>
      ) : classes.length === 0 ? (
        <p class="muted">No classes yet. Create one above.</p>
      ) : (
        <table class="card table">
          <thead>
            <tr>
              <th>Class</th>
              {me.admin && <th>Instructor</th>}
              <th>Members</th>
              <th>Max sessions</th>
              <th>Created</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {classes.map((c) => (
              <tr key={c.id} data-class={c.id}>
                <td>
                  <a href={`#/classes/${c.id}`}>{c.name}</a>
                </td>
                {me.admin && <td>{c.instructor}</td>}
                <td title={c.members.join(", ")}>{membersInWords(c.members.length)}</td>
                <td>{maxSessionsInWords(c.max_sessions)}</td>
                <td>{new Date(c.created_at).toLocaleDateString()}</td>
                <td class="actions">
                  <a class="button" href={`#/classes/${c.id}`}>
                    Open
                  </a>
                  <button class="danger" onClick={() => remove(c)}>
                    Delete
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
