// What the login page says about signing in with a provider (GitHub, an OpenID Connect
// provider); unit-tested in test/login.test.ts.

/** Where a provider's button goes: its login URL, told to come back to the page the browser is
 *  on (the server follows only a path of this site). */
export function providerHref(loginUrl: string, here: { pathname: string; hash: string }): string {
  const separator = loginUrl.includes("?") ? "&" : "?";
  return `${loginUrl}${separator}next=${encodeURIComponent(here.pathname + here.hash)}`;
}

/** A provider sign-in that failed: the server sends the browser back to
 *  `/?login_error=<code>&message=<text>`. */
export interface LoginFailure {
  code: string;
  /** What happened, by the code. */
  title: string;
  /** The server's own words, which say what to do; null when it sent none. */
  message: string | null;
}

const TITLES: Record<string, string> = {
  invalid_state: "The sign-in expired or was already used",
  refused: "The provider refused the sign-in",
  not_allowed: "This account may not sign in here",
  disabled: "This account is disabled",
  provider_error: "The sign-in provider did not answer as expected",
  busy: "Too many sign-ins are in progress",
  store_unavailable: "Berth could not keep the sign-in: its store does not answer",
  not_found: "That sign-in provider is not configured here",
};

/** The failed sign-in the address's query tells of, or null. */
export function loginFailure(search: string): LoginFailure | null {
  const query = new URLSearchParams(search);
  const code = query.get("login_error");
  if (code === null) return null;
  const message = query.get("message")?.trim() || null;
  return { code, title: TITLES[code] ?? "The sign-in failed", message };
}

/** The address without the failure's query, for `history.replaceState`: a reload does not
 *  tell of it again. Other parameters stay. */
export function withoutLoginFailure(location: { pathname: string; search: string; hash: string }): string {
  const query = new URLSearchParams(location.search);
  query.delete("login_error");
  query.delete("message");
  const rest = query.toString();
  return location.pathname + (rest ? `?${rest}` : "") + location.hash;
}
