// The control plane's API as the browser uses it, through @berth/sdk: the login is an HttpOnly
// cookie the page never sees; changes carry the CSRF token that login and /auth/me hand out
// (kept in memory). The types are the SDK's, generated from Berth's OpenAPI document.
import { Berth, BerthError, errorFrom } from "@berth/sdk";
import type {
  Capacity,
  Class,
  ClassView,
  CreateClass,
  CreateUser,
  FileEntry,
  Hint,
  Home,
  JudgeResult,
  Lab,
  LabAttempt,
  LabStep,
  LabSummary,
  Learner,
  LoginProvider,
  Me,
  MemberStart,
  PoolStatus,
  PreviewLink,
  QueuedCreate,
  QueueStatus,
  ResetMode,
  Role,
  Session,
  Snapshot,
  Template,
  TerminalTail,
  TimelineEvent,
  User,
  UserCreated,
} from "@berth/sdk";

export type {
  Capacity,
  Class,
  ClassView,
  CreateClass,
  CreateUser,
  FileEntry,
  Hint,
  Home,
  JudgeResult,
  Lab,
  LabAttempt,
  LabStep,
  LabSummary,
  Learner,
  LoginProvider,
  Me,
  MemberStart,
  PoolStatus,
  PreviewLink,
  QueuedCreate,
  QueueStatus,
  ResetMode,
  Role,
  Session,
  Snapshot,
  Template,
  TerminalTail,
  TimelineEvent,
  User,
  UserCreated,
};
/** An error the API answered with: a stable `code` and a message meant for people. */
export { BerthError as ApiError, errorFrom };

let csrf = "";

/** The page's own origin, read when first used (tests set their own location). */
let client: Berth | undefined;
function berth(): Berth {
  client ??= new Berth({ csrfToken: () => csrf });
  return client;
}

const path = (id: string) => ({ params: { path: { id } } });
const labPath = (slug: string) => ({ params: { path: { slug } } });

export const api = {
  async login(token: string): Promise<Me> {
    const me = (await berth().api.POST("/api/v1/auth/login", { body: { token } })).data!;
    csrf = me.csrf_token;
    return me;
  },
  async me(): Promise<Me> {
    const me = (await berth().api.GET("/api/v1/auth/me")).data!;
    csrf = me.csrf_token;
    return me;
  },
  logout: async () => void (await berth().api.POST("/api/v1/auth/logout")),
  /** The providers one can sign in with besides a token; none when `[auth]` configures none. */
  providers: async (): Promise<LoginProvider[]> => (await berth().api.GET("/api/v1/auth/providers")).data!.providers,
  templates: async (): Promise<Template[]> => (await berth().api.GET("/api/v1/templates")).data!.templates,
  sessions: () => berth().listSessions(),
  /** For the admin: everyone's sessions, the stopped and failed ones too when `ended`. */
  allSessions: async (ended: boolean): Promise<Session[]> =>
    (await berth().api.GET("/api/v1/sessions", { params: { query: { all: ended } } })).data!.sessions,
  session: (id: string) => berth().getSession(id),
  timeline: async (id: string): Promise<TimelineEvent[]> =>
    (await berth().api.GET("/api/v1/sessions/{id}/timeline", path(id))).data!.events,
  /** A running session, or a place in the queue when the host is full (HTTP 202). */
  createSession: (template: string): Promise<Session | QueueStatus> => berth().createSession({ template }),
  /** Where a queued create stands: still its place in line, or the session once admitted. */
  queue: async (ticket: string): Promise<QueueStatus | Session> =>
    (await berth().api.GET("/api/v1/queue/{ticket}", { params: { path: { ticket } } })).data!,
  deleteSession: (id: string) => berth().deleteSession(id),
  hibernateSession: (id: string) => berth().hibernateSession(id),
  resumeSession: (id: string) => berth().resumeSession(id),
  snapshots: async (id: string): Promise<Snapshot[]> =>
    (await berth().api.GET("/api/v1/sessions/{id}/snapshots", path(id))).data!.snapshots,
  createSnapshot: async (id: string, name: string): Promise<Snapshot> =>
    (await berth().api.POST("/api/v1/sessions/{id}/snapshots", { ...path(id), body: { name } })).data!,
  deleteSnapshot: async (id: string) => void (await berth().api.DELETE("/api/v1/snapshots/{id}", path(id))),
  forkSnapshot: async (snapshot: string, template: string): Promise<Session> =>
    (await berth().createSession({ template, from_snapshot: snapshot })) as Session,
  keepalive: async (id: string, seconds: number): Promise<Session> =>
    (await berth().api.POST("/api/v1/sessions/{id}/keepalive", { ...path(id), body: { seconds } })).data!,
  beacon: async (id: string) => void (await berth().api.POST("/api/v1/sessions/{id}/activity", path(id))),
  extendSession: async (id: string, ttl_seconds: number): Promise<Session> =>
    (await berth().api.POST("/api/v1/sessions/{id}/extend", { ...path(id), body: { ttl_seconds } })).data!,
  list: (id: string, dir: string) => berth().listFiles(id, dir),
  read: (id: string, file: string) => berth().readText(id, file),
  write: (id: string, file: string, content: string) => berth().writeFile(id, file, content),
  mkdir: (id: string, dir: string) => berth().mkdir(id, dir),
  move: (id: string, from: string, to: string) => berth().move(id, from, to),
  remove: (id: string, target: string) => berth().remove(id, target, true),
  downloadUrl: (id: string, file: string) =>
    `/api/v1/sessions/${encodeURIComponent(id)}/files/content?path=${encodeURIComponent(file)}`,
  /** Persistent homes: the caller's own, or `user`'s; the admin's without `user` are everyone's. */
  homes: async (user?: string): Promise<Home[]> =>
    (await berth().api.GET("/api/v1/homes", { params: { query: { user } } })).data!.homes,
  /** Refused (409) while a session that has not ended uses the home. */
  deleteHome: async (name: string) =>
    void (await berth().api.DELETE("/api/v1/homes/{name}", { params: { path: { name } } })),
  previewLink: async (id: string, port: number): Promise<PreviewLink> =>
    (await berth().api.POST("/api/v1/sessions/{id}/preview-links", { ...path(id), body: { port, ttl_seconds: 24 * 3600 } }))
      .data!,

  labs: async (): Promise<LabSummary[]> => (await berth().api.GET("/api/v1/labs")).data!.labs,
  lab: async (slug: string): Promise<Lab> => (await berth().api.GET("/api/v1/labs/{slug}", labPath(slug))).data!,
  /** The caller's attempts at every lab, newest first. */
  labProgress: async (): Promise<LabAttempt[]> => (await berth().api.GET("/api/v1/labs/progress")).data!.attempts,
  /** The caller's attempt at a lab whose session still lives, or null when there is none. */
  async activeAttempt(slug: string): Promise<LabAttempt | null> {
    try {
      return (await berth().api.GET("/api/v1/labs/{slug}/active", labPath(slug))).data!;
    } catch (err) {
      if (err instanceof BerthError && err.status === 404) return null;
      throw err;
    }
  },
  /** A session made for the lab (about 10 s), or the attempt already under way. */
  startLab: async (slug: string): Promise<LabAttempt> =>
    (await berth().api.POST("/api/v1/labs/{slug}/start", labPath(slug))).data!,
  /** Runs the current step's checks in the session: seconds, a minute for a Docker build. */
  judge: async (slug: string): Promise<JudgeResult> =>
    (await berth().api.POST("/api/v1/labs/{slug}/judge", { ...labPath(slug), body: {} })).data!,
  hint: async (slug: string, question?: string): Promise<Hint> =>
    (await berth().api.POST("/api/v1/labs/{slug}/hint", { ...labPath(slug), body: { question } })).data!,
  explain: async (slug: string, text: string): Promise<Hint> =>
    (await berth().api.POST("/api/v1/labs/{slug}/explain", { ...labPath(slug), body: { question: text } })).data!,
  resetLab: async (slug: string, mode: ResetMode, step?: number): Promise<LabAttempt> =>
    (await berth().api.POST("/api/v1/labs/{slug}/reset", { ...labPath(slug), body: { mode, step } })).data!,

  // Classes: an instructor's rosters, their labs started and followed.
  classes: async (): Promise<Class[]> => (await berth().api.GET("/api/v1/classes")).data!.classes,
  createClass: async (body: CreateClass): Promise<Class> => (await berth().api.POST("/api/v1/classes", { body })).data!,
  /** The class and where each learner stands now. */
  classView: async (id: string): Promise<ClassView> => (await berth().api.GET("/api/v1/classes/{id}", path(id))).data!,
  deleteClass: async (id: string) => void (await berth().api.DELETE("/api/v1/classes/{id}", path(id))),
  /** Starts the lab for every member, one after another (about 2 s each): what happened for each. */
  startClassLab: async (id: string, slug: string): Promise<MemberStart[]> =>
    (await berth().api.POST("/api/v1/classes/{id}/labs/{slug}/start", { params: { path: { id, slug } } })).data!.started,
  /** Resets a member's active attempt, as LabSteps' Reset does for the learner. */
  resetMember: async (id: string, user: string, slug: string, mode: ResetMode, step?: number): Promise<LabAttempt> =>
    (
      await berth().api.POST("/api/v1/classes/{id}/members/{user}/labs/{slug}/reset", {
        params: { path: { id, user, slug } },
        body: { mode, step },
      })
    ).data!,
  /** A learner's live terminals, each with the end of its output. */
  learnerTerminals: async (id: string, session: string): Promise<TerminalTail[]> =>
    (await berth().api.GET("/api/v1/classes/{id}/sessions/{session}/terminals", { params: { path: { id, session } } }))
      .data!,

  // The admin's: users, and how full the host is.
  users: async (): Promise<User[]> => (await berth().api.GET("/api/v1/users")).data!.users,
  /** The new user, with their token: the only time it is shown. */
  createUser: async (body: CreateUser): Promise<UserCreated> => (await berth().api.POST("/api/v1/users", { body })).data!,
  updateUser: async (name: string, body: { role?: Role; disabled?: boolean }): Promise<User> =>
    (await berth().api.PATCH("/api/v1/users/{name}", { params: { path: { name } }, body })).data!,
  /** Ends their sessions and deletes their tokens and persistent homes. */
  deleteUser: async (name: string) =>
    void (await berth().api.DELETE("/api/v1/users/{name}", { params: { path: { name } } })),
  capacity: async (): Promise<Capacity> => (await berth().api.GET("/api/v1/capacity")).data!,

  /** Uploads with progress (fetch has no upload progress; XMLHttpRequest does). */
  upload(id: string, file: string, blob: Blob, onProgress: (fraction: number) => void): Promise<void> {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("PUT", api.downloadUrl(id, file));
      xhr.setRequestHeader("x-csrf-token", csrf);
      xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
      xhr.onload = async () => {
        if (xhr.status < 300) return resolve();
        reject(await errorFrom(new Response(xhr.responseText, { status: xhr.status })));
      };
      xhr.onerror = () => reject(new BerthError(0, "network", "the upload was cut off"));
      xhr.send(blob);
    });
  },
};

/** The URL of one of a session's WebSockets on this page's host; the login cookie rides along. */
export function socketUrl(sessionId: string, path: string, query: Record<string, string> = {}): string {
  return berth().webSocketUrl(sessionId, path, query);
}

/** The URL of a learner's terminal as their class's instructor watches it: read-only, the
 *  server ignores what is typed. */
export function shadowTerminalUrl(classId: string, sessionId: string, terminalId: string): string {
  const enc = encodeURIComponent;
  const url = new URL(`${berth().baseUrl}/api/v1/classes/${enc(classId)}/sessions/${enc(sessionId)}/terminal`);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  url.search = new URLSearchParams({ terminal_id: terminalId }).toString();
  return url.toString();
}
