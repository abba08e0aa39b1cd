// The admin's users: create one (its token shown once), change a role, disable and enable,
// delete.
import { useEffect, useState } from "preact/hooks";
import { api, ApiError, type Role, type User, type UserCreated } from "../api";
import { checkUserName, deleteUserQuestion, roleChangeInWords, ROLES, sortUsers } from "../lib/admin";
import { toast, toastError } from "../toasts";

export function AdminUsers() {
  const [users, setUsers] = useState<User[] | null>(null);
  const [name, setName] = useState("");
  const [role, setRole] = useState<Role>("user");
  // What is wrong with the form, in words, until it is sent again.
  const [problem, setProblem] = useState<string | null>(null);
  const [creating, setCreating] = useState(false);
  // The user just created, with the token the server shows only this once.
  const [created, setCreated] = useState<UserCreated | null>(null);
  // The user a change is under way for: their buttons wait.
  const [changing, setChanging] = useState<string | null>(null);

  const load = () =>
    api.users().then(
      (all) => setUsers(sortUsers(all)),
      (err) => {
        setUsers((u) => u ?? []);
        toastError("Could not list the users", err);
      },
    );

  useEffect(() => {
    load();
  }, []);

  const create = async (e: Event) => {
    e.preventDefault();
    const checked = checkUserName(name);
    setProblem(checked.error ?? null);
    if (!checked.name) return;
    setCreating(true);
    try {
      setCreated(await api.createUser({ name: checked.name, role }));
      setName("");
      load();
    } catch (err) {
      // A name taken or refused is said beside the form, where it is fixed.
      if (err instanceof ApiError && (err.code === "conflict" || err.code === "invalid_request")) {
        setProblem(`Could not create the user: ${err.message}`);
      } else {
        toastError("Could not create the user", err);
      }
    } finally {
      setCreating(false);
    }
  };

  const update = async (user: User, change: { role?: Role; disabled?: boolean }, done: string) => {
    setChanging(user.name);
    try {
      const updated = await api.updateUser(user.name, change);
      setUsers((all) => all && all.map((u) => (u.name === updated.name ? updated : u)));
      toast(done);
    } catch (err) {
      toastError(`Could not change ${user.name}`, err);
    } finally {
      setChanging(null);
    }
  };

  const disable = (user: User) => {
    const question = `Disable ${user.name}? Their sessions stop, and their tokens and sign-ins are refused until you enable them again.`;
    if (confirm(question)) update(user, { disabled: true }, `${user.name} is disabled`);
  };

  const remove = async (user: User) => {
    if (!confirm(deleteUserQuestion(user.name))) return;
    setChanging(user.name);
    try {
      await api.deleteUser(user.name);
      toast(`Deleted the user ${user.name}`);
      load();
    } catch (err) {
      toastError(`Could not delete ${user.name}`, err);
    } finally {
      setChanging(null);
    }
  };

  const copy = (token: string) =>
    navigator.clipboard.writeText(token).then(
      () => toast("Token copied"),
      (err) => toastError("Could not copy the token (select it and copy it by hand)", err),
    );

  return (
    <section class="card admin-users">
      <h2>Users</h2>
      <form class="row" onSubmit={create}>
        <label>
          Name{" "}
          <input
            name="user-name"
            value={name}
            placeholder="ada"
            autoComplete="off"
            onInput={(e) => setName((e.target as HTMLInputElement).value)}
          />
        </label>
        <label>
          Role{" "}
          <select value={role} onChange={(e) => setRole((e.target as HTMLSelectElement).value as Role)}>
            {ROLES.map((r) => (
              <option key={r.value} value={r.value}>
                {r.label}
              </option>
            ))}
          </select>
        </label>
        <button class="primary" type="submit" disabled={creating}>
          {creating ? "Creating…" : "Create user"}
        </button>
      </form>
      {problem && <p class="notice form-problem">{problem}</p>}
      {created && (
        <div class="notice token-once" data-user={created.name}>
          <p>
            <strong>{created.name}</strong> can log in with this token. It is shown this once: Berth keeps only its hash.
          </p>
          <p class="row">
            <code class="token">{created.token}</code>
            <button onClick={() => copy(created.token)}>Copy</button>
            <button class="ghost" onClick={() => setCreated(null)}>
              Done
            </button>
          </p>
        </div>
      )}
      {users === null ? (
        <p class="muted">Loading…</p>
      ) : users.length === 0 ? (
        <p class="muted">No users yet. Create one above; they log in with the token it shows.</p>
      ) : (
        <table class="table">
          <thead>
            <tr>
              <th>Name</th>
              <th>Role</th>
              <th>Status</th>
              <th>Created</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {users.map((user) => (
              <tr key={user.id} data-user={user.name} class={user.disabled ? "disabled" : ""}>
                <td>{user.name}</td>
                <td>
                  <select
                    aria-label={`${user.name}'s role`}
                    value={user.role}
                    disabled={changing === user.name}
                    onChange={(e) => {
                      const next = (e.target as HTMLSelectElement).value as Role;
                      update(user, { role: next }, roleChangeInWords(user.name, next));
                    }}
                  >
                    {ROLES.map((r) => (
                      <option key={r.value} value={r.value}>
                        {r.label}
                      </option>
                    ))}
                  </select>
                </td>
                <td>
                  <span class={`badge user-status ${user.disabled ? "state-failed" : "state-running"}`}>
                    {user.disabled ? "Disabled" : "Active"}
                  </span>
                </td>
                <td>{new Date(user.created_at).toLocaleString()}</td>
                <td class="actions">
                  {user.disabled ? (
                    <button
                      disabled={changing === user.name}
                      onClick={() => update(user, { disabled: false }, `${user.name} is enabled`)}
                    >
                      Enable
                    </button>
                  ) : (
                    <button disabled={changing === user.name} onClick={() => disable(user)}>
                      Disable
                    </button>
                  )}
                  <button class="danger" disabled={changing === user.name} onClick={() => remove(user)}>
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
