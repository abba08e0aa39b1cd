// The control plane's API as the browser uses it: the login is an HttpOnly cookie the page
// never sees; changes carry the CSRF token that login and /auth/me hand out (kept in memory).

export interface Session {
  id: string;
  owner: string;
  template: string;
  state:
    | "creating"
    | "pooled"
    | "running"
    | "stopping"
    | "stopped"
    | "failed"
    | "hibernating"
    | "hibernated"
    | "restoring";
  labels: Record<string, string>;
  created_at: string;
  expires_at: string;
  last_activity: string;
  stop_reason?: string;
  hibernated_at?: string;
  /** While asleep or waking: how long until it is awake (restores lately, plus any wait for room), in milliseconds. */
  wake_estimate_ms?: number;
  /** While its restore waits for room (the host is full): its place in line, 1 next. */
  wake_queue_position?: number;
}

/** A named snapshot of a session's files, to fork new sessions from. */
export interface Snapshot {
  id: string;
  session_id: string;
  owner: string;
  name: string;
  created_at: string;
  /** Bytes it holds above its template's image: the disk it costs. */
  size_bytes?: number;
  pause_ms?: number;
}

/** One entry of a session's timeline: a restart that lost its processes, a failure. */
export interface TimelineEvent {
  at: string;
  kind: string;
  message: string;
}

export interface QueueStatus {
  ticket: string;
  state: "queued" | "admitted" | "failed";
  position?: number;
  estimated_wait_seconds?: number;
  status_url: string;
  session?: Session;
  error?: { code: string; message: string };
}

export interface Template {
  name: string;
  image: string;
  memory_mb: number;
  cpus: number;
  ttl_seconds: number;
  max_ttl_seconds: number;
}

export interface FileEntry {
  name: string;
  path: string;
  type: "file" | "dir" | "symlink" | "other";
  size: number;
  mtime: string;
}

export interface Me {
  name: string;
  admin: boolean;
  csrf_token: string;
}

export interface PreviewLink {
  path: string;
  url?: string;
  expires_at: string;
}

/** An error the API answered with: a stable `code` and a message meant for people. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** Turns an error response into an ApiError, whatever its body holds. */
export async function errorFrom(response: Response): Promise<ApiError> {
  const text = await response.text().catch(() => "");
  try {
    const body = JSON.parse(text);
    if (body?.error?.code) return new ApiError(response.status, body.error.code, body.error.message);
  } catch {
    // not JSON: fall through
  }
  return new ApiError(response.status, "http_" + response.status, text.trim() || response.statusText || `HTTP ${response.status}`);
}

let csrf = "";

const SAFE = new Set(["GET", "HEAD", "OPTIONS"]);

export async function request(method: string, path: string, body?: unknown, raw?: BodyInit): Promise<Response> {
  const headers: Record<string, string> = {};
  if (!SAFE.has(method)) headers["x-csrf-token"] = csrf;
  if (body !== undefined) headers["content-type"] = "application/json";
  let response: Response;
  try {
    response = await fetch(path, {
      method,
      headers,
      credentials: "same-origin",
      body: body !== undefined ? JSON.stringify(body) : raw,
    });
  } catch {
    throw new ApiError(0, "network", "Berth cannot be reached; check your connection");
  }
  if (!response.ok) throw await errorFrom(response);
  return response;
}

async function json<T>(method: string, path: string, body?: unknown): Promise<T> {
  return (await request(method, path, body)).json() as Promise<T>;
}

const enc = encodeURIComponent;
const files = (id: string) => `/api/v1/sessions/${enc(id)}/files`;

export const api = {
  async login(token: string): Promise<Me> {
    const me = await json<Me>("POST", "/api/v1/auth/login", { token });
    csrf = me.csrf_token;
    return me;
  },
  async me(): Promise<Me> {
    const me = await json<Me>("GET", "/api/v1/auth/me");
    csrf = me.csrf_token;
    return me;
  },
  logout: () => request("POST", "/api/v1/auth/logout"),
  templates: async () => (await json<{ templates: Template[] }>("GET", "/api/v1/templates")).templates,
  sessions: async () => (await json<{ sessions: Session[] }>("GET", "/api/v1/sessions")).sessions,
  session: (id: string) => json<Session>("GET", `/api/v1/sessions/${enc(id)}`),
  timeline: async (id: string) =>
    (await json<{ events: TimelineEvent[] }>("GET", `/api/v1/sessions/${enc(id)}/timeline`)).events,
  /** A running session, or a place in the queue when the host is full (HTTP 202). */
  createSession: async (template: string): Promise<Session | QueueStatus> =>
    json<Session | QueueStatus>("POST", "/api/v1/sessions", { template }),
  queue: (statusUrl: string) => json<QueueStatus>("GET", statusUrl),
  deleteSession: (id: string) => request("DELETE", `/api/v1/sessions/${enc(id)}`),
  hibernateSession: (id: string) => json<Session>("POST", `/api/v1/sessions/${enc(id)}/hibernate`),
  resumeSession: (id: string) => json<Session>("POST", `/api/v1/sessions/${enc(id)}/resume`),
  snapshots: async (id: string) =>
    (await json<{ snapshots: Snapshot[] }>("GET", `/api/v1/sessions/${enc(id)}/snapshots`)).snapshots,
  createSnapshot: (id: string, name: string) => json<Snapshot>("POST", `/api/v1/sessions/${enc(id)}/snapshots`, { name }),
  deleteSnapshot: (id: string) => request("DELETE", `/api/v1/snapshots/${enc(id)}`),
  forkSnapshot: (snapshot: string, template: string) =>
    json<Session>("POST", "/api/v1/sessions", { template, from_snapshot: snapshot }),
  keepalive: (id: string, seconds: number) =>
    json<Session>("POST", `/api/v1/sessions/${enc(id)}/keepalive`, { seconds }),
  beacon: (id: string) => request("POST", `/api/v1/sessions/${enc(id)}/activity`),
  extendSession: (id: string, ttl_seconds: number) =>
    json<Session>("POST", `/api/v1/sessions/${enc(id)}/extend`, { ttl_seconds }),
  list: async (id: string, path: string) =>
    (await json<{ entries: FileEntry[] }>("GET", `${files(id)}?path=${enc(path)}`)).entries,
  read: async (id: string, path: string) => (await request("GET", `${files(id)}/content?path=${enc(path)}`)).text(),
  write: (id: string, path: string, content: string) => request("PUT", `${files(id)}/content?path=${enc(path)}`, undefined, content),
  mkdir: (id: string, path: string) => request("POST", `${files(id)}/mkdir`, { path }),
  move: (id: string, from: string, to: string) => request("POST", `${files(id)}/move`, { from, to }),
  remove: (id: string, path: string) => request("DELETE", `${files(id)}?path=${enc(path)}&recursive=true`),
  downloadUrl: (id: string, path: string) => `${files(id)}/content?path=${enc(path)}`,
  previewLink: (id: string, port: number) =>
    json<PreviewLink>("POST", `/api/v1/sessions/${enc(id)}/preview-links`, { port, ttl_seconds: 24 * 3600 }),

  /** Uploads with progress (fetch has no upload progress; XMLHttpRequest does). */
  upload(id: string, path: string, file: Blob, onProgress: (fraction: number) => void): Promise<void> {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("PUT", `${files(id)}/content?path=${enc(path)}`);
      xhr.setRequestHeader("x-csrf-token", csrf);
      xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
      xhr.onload = async () => {
        if (xhr.status < 300) return resolve();
        reject(await errorFrom(new Response(xhr.responseText, { status: xhr.status })));
      };
      xhr.onerror = () => reject(new ApiError(0, "network", "the upload was cut off"));
      xhr.send(file);
    });
  },
};

/** `ws://` or `wss://` URL of an API path on this page's host; the login cookie rides along. */
export function socketUrl(path: string): string {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${path}`;
}
