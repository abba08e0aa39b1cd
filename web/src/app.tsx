import { useEffect, useState } from "preact/hooks";
import { api, type Me } from "./api";
import { Admin } from "./components/Admin";
import { ClassPage } from "./components/Class";
import { Classes } from "./components/Classes";
import { LabPage } from "./components/Lab";
import { Labs } from "./components/Labs";
import { Login } from "./components/Login";
import { Sessions } from "./components/Sessions";
import { TimelinePage } from "./components/Timeline";
import { Workspace } from "./components/Workspace";
import { canTeach } from "./lib/classes";
import { Toasts, toastError } from "./toasts";

export type Theme = "light" | "dark";

function initialTheme(): Theme {
  const saved = localStorage.getItem("berth.theme");
  if (saved === "light" || saved === "dark") return saved;
  return matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}

/** `#/s/<id>` opens a workspace and `#/timeline/<id>` a session's timeline, `#/labs` the labs
 *  and `#/labs/<slug>` one of them, `#/classes` an instructor's classes and `#/classes/<id>` one
 *  of them, `#/admin` the admin's page; anything else is the sessions page. */
function useRoute(): string {
  const [hash, setHash] = useState(location.hash);
  useEffect(() => {
    const onChange = () => setHash(location.hash);
    addEventListener("hashchange", onChange);
    return () => removeEventListener("hashchange", onChange);
  }, []);
  return hash;
}

export function App() {
  const [me, setMe] = useState<Me | null | undefined>(undefined);
  const [theme, setTheme] = useState<Theme>(initialTheme);
  const route = useRoute();

  useEffect(() => {
    api.me().then(setMe, () => setMe(null));
  }, []);
  useEffect(() => {
    document.documentElement.dataset.theme = theme;
    localStorage.setItem("berth.theme", theme);
  }, [theme]);

  const logout = async () => {
    try {
      await api.logout();
    } catch (err) {
      toastError("Logging out failed", err);
    }
    setMe(null);
  };

  const workspace = route.match(/^#\/s\/([a-z0-9]+)/)?.[1];
  const lab = route.match(/^#\/labs\/([a-z0-9][a-z0-9_-]*)/)?.[1];
  const labs = /^#\/labs\/?$/.test(route);
  const classId = route.match(/^#\/classes\/([A-Za-z0-9_-]+)/)?.[1];
  const classes = /^#\/classes\/?$/.test(route);
  const timeline = route.match(/^#\/timeline\/([a-z0-9]+)/)?.[1];
  const admin = /^#\/admin\/?$/.test(route);
  return (
    <div class="app">
      <header class="topbar">
        <a class="brand" href="#/">
          ⚓ Berth
        </a>
        <a class={`nav-link ${lab || labs ? "active" : ""}`} href="#/labs">
          Labs
        </a>
        {me && canTeach(me) && (
          <a class={`nav-link ${classId || classes ? "active" : ""}`} href="#/classes">
            Classes
          </a>
        )}
        {me?.admin && (
          <a class={`nav-link ${admin ? "active" : ""}`} href="#/admin">
            Admin
          </a>
        )}
        <span class="spacer" />
        <button class="ghost" title="Switch theme" onClick={() => setTheme(theme === "dark" ? "light" : "dark")}>
          {theme === "dark" ? "☀ Light" : "☾ Dark"}
        </button>
        {me && (
          <>
            <span class="muted">{me.name}</span>
            <button class="ghost" onClick={logout}>
              Log out
            </button>
          </>
        )}
      </header>
      <main class="content">
        {me === undefined ? (
          <p class="muted center">Loading…</p>
        ) : me === null ? (
          <Login onLogin={setMe} />
        ) : workspace ? (
          <Workspace id={workspace} theme={theme} />
        ) : timeline ? (
          <TimelinePage key={timeline} id={timeline} me={me} />
        ) : lab ? (
          <LabPage key={lab} slug={lab} theme={theme} />
        ) : labs ? (
          <Labs />
        ) : classId ? (
          <ClassPage key={classId} id={classId} theme={theme} />
        ) : classes ? (
          <Classes me={me} />
        ) : admin ? (
          <Admin me={me} />
        ) : (
          <Sessions me={me} />
        )}
      </main>
      <Toasts />
    </div>
  );
}
