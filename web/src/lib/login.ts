// What the login page says about signing in with a provider (GitHub, an OpenID Connect
// provider); unit-tested in test/login.test.ts.

/** Where a provider's button goes: its login URL, told to come back to the page the browser is
 *  on (the server follows only a path of this site). */
export function providerHref(loginUrl: string, here: { pathname: string; hash: string }): string {
  const separator = loginUrl.includes("?") ? "&" : "?";
  return `${loginUrl}${separator}next=${encodeURIComponent(here.pathname + here.hash)}`;
}

/** A provider sign-in that failed: the server sends the browser back to
 *  `/?login_error=<code>`. Only this page's own words are shown for it: text taken from the
 *  address would let any link put words on Berth's page. */
export interface LoginFailure {
  code: string;
  /** What happened, by the code. */
  title: string;
  /** What to do about it. */
  advice: string;
}

const FAILURES: Record<string, [string, string]> = {
  invalid_state: ["The sign-in expired or was already used", "Sign in again from this page."],
  refused: ["The provider refused the sign-in", "Sign in again; if it keeps failing, ask the admin (the server's log says why)."],
  not_allowed: ["This account may not sign in here", "Ask the admin to allow your organisation, domain or address."],
  disabled: ["This account is disabled", "Ask the admin to enable it."],
  provider_error: ["The sign-in provider did not answer as expected", "Try again in a moment; the server's log says what it answered."],
  busy: ["Too many sign-ins are in progress", "Try again in a few minutes."],
  store_unavailable: ["Berth could not keep the sign-in: its store does not answer", "Try again in a moment."],
  not_found: ["That sign-in provider is not configured here", "Use one of the buttons below."],
};

/** The failed sign-in the address's query tells of, or null. */
export function loginFailure(search: string): LoginFailure | null {
  const query = new URLSearchParams(search);
  const code = query.get("login_error");
  if (code === null) return null;
  const [title, advice] = FAILURES[code] ?? ["The sign-in failed", "Sign in again from this page."];
  return { code, title, advice };
}

/** The address without the failure's query, for `history.replaceState`: a reload does not
 *  tell of it again. Other parameters stay. */
export function withoutLoginFailure(location: { pathname: string; search: string; hash: string }): string {
  const query = new URLSearchParams(location.search);
  query.delete("login_error");
  const rest = query.toString();
  return location.pathname + (rest ? `?${rest}` : "") + location.hash;
}
