import { useState } from "preact/hooks";
import { api, ApiError, type Me } from "../api";
import { toastError } from "../toasts";

export function Login({ onLogin }: { onLogin: (me: Me) => void }) {
  const [token, setToken] = useState("");
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    try {
      onLogin(await api.login(token));
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) {
        toastError("Login refused", new Error("that token is not valid; `berth user create NAME` makes one"));
      } else {
        toastError("Login failed", err);
      }
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="card login" onSubmit={submit}>
      <h1>Log in to Berth</h1>
      <p class="muted">Paste your API token. It is kept in an HttpOnly cookie, never in the page's storage.</p>
      <label>
        Token
        <input
          name="token"
          type="password"
          autoComplete="off"
          value={token}
          onInput={(e) => setToken((e.target as HTMLInputElement).value)}
          autoFocus
          required
        />
      </label>
      <button class="primary" type="submit" disabled={busy || !token.trim()}>
        {busy ? "Logging in…" : "Log in"}
      </button>
    </form>
  );
}
