import { useEffect, useState } from "preact/hooks";
import { api, ApiError, type LoginProvider, type Me } from "../api";
import { loginFailure, providerHref, withoutLoginFailure } from "../lib/login";
import { toastError } from "../toasts";

export function Login({ onLogin }: { onLogin: (me: Me) => void }) {
  const [token, setToken] = useState("");
  const [busy, setBusy] = useState(false);
  const [providers, setProviders] = useState<LoginProvider[] | null>(null);
  // A provider's sign-in that failed and sent the browser back here, read once.
  const [failure] = useState(() => loginFailure(location.search));

  useEffect(() => {
    // Said once: a reload or a bookmark does not bring the failure back.
    if (failure) history.replaceState(history.state, "", withoutLoginFailure(location));
    // Without providers the token is the only way in, which the form says already.
    api.providers().then(setProviders, () => setProviders([]));
  }, []);

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
      {failure && (
        <div class="notice login-failure" role="alert" data-code={failure.code}>
          <strong>{failure.title}.</strong>
          <p>{failure.advice}</p>
        </div>
      )}
      {providers && providers.length > 0 && (
        <div class="login-providers">
          {providers.map((p) => (
            <a key={p.id} class="button provider" data-provider={p.id} href={providerHref(p.login_url, location)}>
              Sign in with {p.name}
            </a>
          ))}
          <div class="muted login-or">or</div>
        </div>
      )}
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
