// @berth/webcontainer: the public API of StackBlitz's `@webcontainer/api` 1.6, backed by a
// Berth session, a real Linux container, instead of a WebAssembly one in the tab. Code written
// for WebContainers runs unchanged with `@webcontainer/api` aliased to this package. What cannot
// map, and what Berth adds, is in this package's README.
import { Berth, BerthError, type ProcessStream, type Subscription, type WebSocketConstructor } from "@berth/sdk";

// The types of `@webcontainer/api` 1.6, same names, same string values.

export type Unsubscribe = () => void;

export interface FileSystemTree {
  [name: string]: DirectoryNode | FileNode | SymlinkNode;
}
export interface DirectoryNode {
  directory: FileSystemTree;
}
export interface FileNode {
  file: {
    contents: string | Uint8Array;
  };
}
export interface SymlinkNode {
  file: {
    symlink: string;
  };
}

export interface AuthAPI {
  init(options: AuthInitOptions): { status: "need-auth" | "authorized" } | AuthFailedError;
  startAuthFlow(options?: { popup?: boolean }): void;
  loggedIn(): Promise<void>;
  logout(options?: { ignoreRevokeError?: boolean }): Promise<void>;
  on(event: "logged-out", listener: () => void): Unsubscribe;
  on(event: "auth-failed", listener: (reason: { error: string; description: string }) => void): Unsubscribe;
}
export interface AuthInitOptions {
  editorOrigin?: string;
  clientId: string;
  scope: string;
}
export interface AuthFailedError {
  status: "auth-failed";
  error: string;
  description: string;
}

export enum PreviewMessageType {
  UncaughtException = "PREVIEW_UNCAUGHT_EXCEPTION",
  UnhandledRejection = "PREVIEW_UNHANDLED_REJECTION",
  ConsoleError = "PREVIEW_CONSOLE_ERROR",
}
export type PreviewMessage = (UncaughtExceptionMessage | UnhandledRejectionMessage | ConsoleErrorMessage) &
  BasePreviewMessage;
export interface BasePreviewMessage {
  previewId: string;
  port: number;
  pathname: string;
  search: string;
  hash: string;
}
export interface UncaughtExceptionMessage {
  type: PreviewMessageType.UncaughtException;
  message: string;
  stack: string | undefined;
}
export interface UnhandledRejectionMessage {
  type: PreviewMessageType.UnhandledRejection;
  message: string;
  stack: string | undefined;
}
export interface ConsoleErrorMessage {
  type: PreviewMessageType.ConsoleError;
  args: any[];
  stack: string;
}
export interface ExportOptions {
  format?: "json" | "binary" | "zip";
  includes?: string[];
  excludes?: string[];
}
export interface PreviewScriptOptions {
  type?: "module" | "importmap";
  defer?: boolean;
  async?: boolean;
}
export type CodeEventType = "open" | "diff";
export interface CodeEventFile {
  filepath: string;
  line?: number;
  column?: number;
}
export interface CodeEvent {
  files: CodeEventFile[];
}
export interface LoadFilesOptions {
  mountPoint?: string;
}
export interface BootOptions {
  coep?: "require-corp" | "credentialless" | "none";
  workdirName?: string;
  forwardPreviewErrors?: boolean | "exceptions-only";
}
export type PortListener = (port: number, type: "open" | "close", url: string) => void;
export type ServerReadyListener = (port: number, url: string) => void;
export type PreviewMessageListener = (message: PreviewMessage) => void;
export type ErrorListener = (error: { message: string }) => void;
export type OpenListener = (text: string) => void;
export type CodeListener = (type: CodeEventType, event: CodeEvent) => void;
export interface DirEnt<T> {
  name: T;
  isFile(): boolean;
  isDirectory(): boolean;
}
export type BufferEncoding =
  | "ascii"
  | "utf8"
  | "utf-8"
  | "utf16le"
  | "ucs2"
  | "ucs-2"
  | "base64"
  | "base64url"
  | "latin1"
  | "binary"
  | "hex";
export interface FileSystemAPI {
  readdir(path: string, options: "buffer" | { encoding: "buffer"; withFileTypes?: false }): Promise<Uint8Array[]>;
  readdir(
    path: string,
    options?: { encoding?: BufferEncoding | null; withFileTypes?: false } | BufferEncoding | null,
  ): Promise<string[]>;
  readdir(path: string, options: { encoding: "buffer"; withFileTypes: true }): Promise<DirEnt<Uint8Array>[]>;
  readdir(path: string, options: { encoding?: BufferEncoding | null; withFileTypes: true }): Promise<DirEnt<string>[]>;
  readFile(path: string, encoding?: null): Promise<Uint8Array>;
  readFile(path: string, encoding: BufferEncoding): Promise<string>;
  writeFile(path: string, data: string | Uint8Array, options?: string | { encoding?: string | null } | null): Promise<void>;
  mkdir(path: string, options?: { recursive?: false }): Promise<void>;
  mkdir(path: string, options: { recursive: true }): Promise<string>;
  rm(path: string, options?: { force?: boolean; recursive?: boolean }): Promise<void>;
  rename(oldPath: string, newPath: string): Promise<void>;
  watch(filename: string, options?: FSWatchOptions, listener?: FSWatchCallback): IFSWatcher;
  watch(filename: string, listener?: FSWatchCallback): IFSWatcher;
}
export interface IFSWatcher {
  close(): void;
}
export type FSWatchOptions = { encoding?: BufferEncoding | null; persistent?: boolean; recursive?: boolean } | string | null;
export type FSWatchCallback = (event: "rename" | "change", filename: string | Uint8Array) => void;
export interface WebContainerProcess {
  exit: Promise<number>;
  input: WritableStream<string>;
  output: ReadableStream<string>;
  kill(): void;
  resize(dimensions: { cols: number; rows: number }): void;
}
export interface SpawnOptions {
  cwd?: string;
  env?: Record<string, string | number | boolean>;
  output?: boolean;
  terminal?: { cols: number; rows: number };
}

// Where the sessions come from: Berth's additions, set before `boot`.

export interface ServerOptions {
  /** Berth's base URL; the page's origin in a browser, `BERTH_URL` in Node, when unset. */
  url?: string;
  /** A Berth token; `configureAPIKey` sets it too, `BERTH_TOKEN` in Node. Without one, the login cookie. */
  token?: string;
  /** The template sessions are made from (`node` by default: Node.js and npm). */
  template?: string;
  /** Node 20 has no global WebSocket: pass `ws`'s. */
  WebSocket?: WebSocketConstructor;
}

const server: ServerOptions = {};

/** Says which Berth to boot on (Berth's addition; `@webcontainer/api` has only `configureAPIKey`). */
export function configureServer(options: ServerOptions): void {
  Object.assign(server, options);
}

/** Sets the Berth token sessions are made with (WebContainer's API key). */
export function configureAPIKey(key: string): void {
  server.token = key;
}

/** Berth needs no StackBlitz login: every call reports it authorized, and nothing ever fires. */
export const auth: AuthAPI = {
  init: () => ({ status: "authorized" }),
  startAuthFlow: () => {},
  loggedIn: async () => {},
  logout: async () => {},
  on: () => () => {},
};

/** Loads the preview again (a Berth preview is a plain page: reloading its frame is all it takes). */
export async function reloadPreview(preview: HTMLIFrameElement, _hardRefreshTimeout?: number): Promise<void> {
  preview.src = preview.src;
}

export function isPreviewMessage(data: any): data is PreviewMessage {
  return (
    data != null &&
    typeof data === "object" &&
    Object.values(PreviewMessageType).includes(data.type) &&
    typeof data.previewId === "string"
  );
}

const env = (name: string): string | undefined =>
  (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.[name];

type Listeners = {
  port: Set<PortListener>;
  "server-ready": Set<ServerReadyListener>;
  "preview-message": Set<PreviewMessageListener>;
  error: Set<ErrorListener>;
  "xdg-open": Set<OpenListener>;
  code: Set<CodeListener>;
};

let booted: WebContainer | undefined;

/** A WebContainer: one Berth session, made by `boot`, removed by `teardown`. */
export class WebContainer {
  fs: FileSystemAPI;
  readonly #berth: Berth;
  readonly #session: string;
  readonly #workdir: string;
  readonly #listeners: Listeners = {
    port: new Set(),
    "server-ready": new Set(),
    "preview-message": new Set(),
    error: new Set(),
    "xdg-open": new Set(),
    code: new Set(),
  };
  readonly #previewUrls = new Map<number, string>();
  #events?: Subscription;
  #tornDown = false;

  private constructor(berth: Berth, session: string, workdir: string) {
    this.#berth = berth;
    this.#session = session;
    this.#workdir = workdir;
    this.fs = new SessionFileSystem(berth, session, workdir);
  }

  /**
   * Makes a session (template `node` unless `configureServer` says otherwise) with a working
   * directory `/home/user/<workdirName>`, and follows its ports. One at a time, as in
   * WebContainers. `coep` and `forwardPreviewErrors` change nothing: a Berth preview needs no
   * cross-origin isolation.
   */
  static async boot(options: BootOptions = {}): Promise<WebContainer> {
    if (booted) throw new Error("Only a single WebContainer instance can be booted");
    const berth = new Berth({
      baseUrl: server.url ?? env("BERTH_URL"),
      token: server.token ?? env("BERTH_TOKEN"),
      WebSocket: server.WebSocket,
    });
    const session = await berth.createRunningSession({
      template: server.template ?? "node",
      labels: { "berth.dev/client": "webcontainer" },
    });
    const workdir = `/home/user/${options.workdirName ?? "project"}`;
    try {
      await berth.mkdir(session.id, workdir);
      const container = new WebContainer(berth, session.id, workdir);
      container.#events = await berth.events(session.id, (event) => container.#onEvent(event));
      booted = container;
      return container;
    } catch (err) {
      await berth.deleteSession(session.id).catch(() => {});
      throw err;
    }
  }

  async #onEvent(event: { type: string; port?: number }) {
    const port = event.port;
    if (port === undefined) return;
    try {
      if (event.type === "port-open") {
        const url = await this.#berth.previewLink(this.#session, port);
        this.#previewUrls.set(port, url);
        for (const listener of this.#listeners.port) listener(port, "open", url);
        for (const listener of this.#listeners["server-ready"]) listener(port, url);
      } else if (event.type === "port-closed") {
        const url = this.#previewUrls.get(port) ?? "";
        this.#previewUrls.delete(port);
        for (const listener of this.#listeners.port) listener(port, "close", url);
      }
    } catch (err) {
      for (const listener of this.#listeners.error) listener({ message: String((err as Error).message ?? err) });
    }
  }

  /** Runs a program in the session under a terminal, as WebContainers do, its output the terminal's. */
  spawn(command: string, args: string[], options?: SpawnOptions): Promise<WebContainerProcess>;
  spawn(command: string, options?: SpawnOptions): Promise<WebContainerProcess>;
  async spawn(
    command: string,
    argsOrOptions?: string[] | SpawnOptions,
    maybeOptions?: SpawnOptions,
  ): Promise<WebContainerProcess> {
    this.#ensureBooted();
    const args = Array.isArray(argsOrOptions) ? argsOrOptions : [];
    const options = (Array.isArray(argsOrOptions) ? maybeOptions : argsOrOptions) ?? {};
    const terminal = options.terminal ?? { cols: 80, rows: 24 };
    const started = await this.#berth.startProcess(this.#session, {
      cmd: [command, ...args],
      cwd: resolvePath(this.#workdir, options.cwd ?? "."),
      env: Object.fromEntries(Object.entries(options.env ?? {}).map(([k, v]) => [k, String(v)])),
      pty: terminal,
    });
    const stream = await this.#berth.attach(this.#session, started.id);
    return new SessionProcess(stream, options.output !== false);
  }

  export(path: string): Promise<FileSystemTree>;
  export(path: string, options: ExportOptions & { format?: "json" }): Promise<FileSystemTree>;
  export(path: string, options: ExportOptions): Promise<Uint8Array>;
  /** A directory as a tree (`format: "json"`, the default); contents are text when UTF-8, else bytes. */
  async export(path: string, options: ExportOptions = {}): Promise<FileSystemTree | Uint8Array> {
    this.#ensureBooted();
    if ((options.format ?? "json") !== "json") {
      throw new BerthError(400, "unsupported", `export format ${options.format} is not available on Berth; use "json"`);
    }
    const root = resolvePath(this.#workdir, path);
    const included = (relative: string) =>
      (!options.includes?.length || options.includes.some((glob) => globToRegExp(glob).test(relative))) &&
      !options.excludes?.some((glob) => globToRegExp(glob).test(relative));
    const walk = async (dir: string, prefix: string): Promise<FileSystemTree> => {
      const tree: FileSystemTree = {};
      for (const entry of await this.#berth.listFiles(this.#session, dir)) {
        const relative = prefix + entry.name;
        if (entry.type === "dir") {
          const below = await walk(entry.path, relative + "/");
          if (Object.keys(below).length > 0 || included(relative)) tree[entry.name] = { directory: below };
        } else if (entry.type === "file" && included(relative)) {
          const bytes = await this.#berth.readFile(this.#session, entry.path);
          tree[entry.name] = { file: { contents: textOrBytes(bytes) } };
        }
      }
      return tree;
    };
    return walk(root, "");
  }

  on(event: "port", listener: PortListener): Unsubscribe;
  on(event: "server-ready", listener: ServerReadyListener): Unsubscribe;
  on(event: "preview-message", listener: PreviewMessageListener): Unsubscribe;
  on(event: "error", listener: ErrorListener): Unsubscribe;
  on(event: "xdg-open", listener: OpenListener): Unsubscribe;
  on(event: "code", listener: CodeListener): Unsubscribe;
  /** `preview-message`, `xdg-open` and `code` come from StackBlitz's in-browser runtime: they never fire here. */
  on(event: keyof Listeners, listener: (...args: any[]) => void): Unsubscribe {
    const set = this.#listeners[event] as Set<(...args: any[]) => void>;
    set.add(listener);
    // A server that was up before anyone listened is announced to each newcomer, as in WebContainers.
    if (event === "server-ready" || event === "port") {
      for (const [port, url] of this.#previewUrls) {
        if (event === "port") listener(port, "open", url);
        else listener(port, url);
      }
    }
    return () => set.delete(listener);
  }

  /** Writes a tree into the working directory (or `mountPoint` in it). */
  async mount(snapshotOrTree: FileSystemTree | Uint8Array | ArrayBuffer, options?: LoadFilesOptions): Promise<void> {
    this.#ensureBooted();
    if (snapshotOrTree instanceof Uint8Array || snapshotOrTree instanceof ArrayBuffer) {
      throw new BerthError(400, "unsupported", "binary snapshots are StackBlitz's format; mount a FileSystemTree");
    }
    const root = resolvePath(this.#workdir, options?.mountPoint ?? ".");
    const write = async (dir: string, tree: FileSystemTree) => {
      await this.#berth.mkdir(this.#session, dir);
      for (const [name, node] of Object.entries(tree)) {
        const path = `${dir}/${name}`;
        if ("directory" in node) await write(path, node.directory);
        else if ("symlink" in node.file) {
          const result = await this.#berth.exec(this.#session, { cmd: ["ln", "-sfn", node.file.symlink, path] });
          if (result.exit_code !== 0) throw new BerthError(500, "mount", `symlink ${path}: ${result.stderr}`);
        } else await this.#berth.writeFile(this.#session, path, node.file.contents);
      }
    };
    await write(root, snapshotOrTree);
  }

  /** Preview scripts are injected by StackBlitz's service worker, which Berth has no need of: nothing is injected. */
  async setPreviewScript(_scriptSrc: string, _options?: PreviewScriptOptions): Promise<void> {}

  /** The session's search path. */
  get path(): string {
    return "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  }

  /** The working directory in the session, `/home/user/<workdirName>`. */
  get workdir(): string {
    return this.#workdir;
  }

  /** Ends the session and everything in it. */
  teardown(): void {
    if (this.#tornDown) return;
    this.#tornDown = true;
    this.#events?.close();
    if (booted === this) booted = undefined;
    void this.#berth.deleteSession(this.#session).catch(() => {});
  }

  /** The Berth session behind this container (Berth's addition). */
  get sessionId(): string {
    return this.#session;
  }

  #ensureBooted() {
    if (this.#tornDown) throw new Error("WebContainer has been torn down");
  }
}

/** A process stream as a WebContainerProcess: strings in and out, an exit code. */
class SessionProcess implements WebContainerProcess {
  readonly exit: Promise<number>;
  readonly input: WritableStream<string>;
  readonly output: ReadableStream<string>;

  constructor(
    private readonly stream: ProcessStream,
    forwardOutput: boolean,
  ) {
    const decoder = new TextDecoder();
    this.output = new ReadableStream<string>({
      start(controller) {
        stream.onOutput((bytes) => {
          if (forwardOutput) controller.enqueue(decoder.decode(bytes, { stream: true }));
        });
        stream.exit.then(
          () => controller.close(),
          (err) => controller.error(err),
        );
      },
    });
    this.input = new WritableStream<string>({ write: (chunk) => stream.write(chunk) });
    // A process killed by a signal exits, as in a shell, with 128 plus its number.
    this.exit = stream.exit.then((exit) => exit.exitCode ?? 128 + (exit.signal ?? 0));
  }

  kill(): void {
    this.stream.signal(9);
  }

  resize(dimensions: { cols: number; rows: number }): void {
    this.stream.resize(dimensions.cols, dimensions.rows);
  }
}

/** WebContainer's `fs`, rooted at the working directory, on the session's files. Each method is
 * the one implementation of the interface's overloads. */
class SessionFileSystem implements FileSystemAPI {
  constructor(
    private readonly berth: Berth,
    private readonly session: string,
    private readonly workdir: string,
  ) {}

  #path(path: string) {
    return resolvePath(this.workdir, path);
  }

  async readdir(path: string, options?: unknown): Promise<any[]> {
    const opts = typeof options === "string" ? { encoding: options } : ((options ?? {}) as { encoding?: string; withFileTypes?: boolean });
    const entries = await this.berth.listFiles(this.session, this.#path(path));
    const name = (text: string) => (opts.encoding === "buffer" ? new TextEncoder().encode(text) : text);
    if (!opts.withFileTypes) return entries.map((e) => name(e.name));
    return entries.map((e) => ({
      name: name(e.name),
      isFile: () => e.type === "file",
      isDirectory: () => e.type === "dir",
    }));
  }

  async readFile(path: string, encoding?: BufferEncoding | null): Promise<any> {
    const bytes = await this.berth.readFile(this.session, this.#path(path));
    return encoding ? decode(bytes, encoding) : bytes;
  }

  async writeFile(path: string, data: string | Uint8Array, options?: string | { encoding?: string | null } | null) {
    const encoding = typeof options === "string" ? options : options?.encoding;
    const bytes = typeof data === "string" && encoding && !/^utf-?8$/i.test(encoding) ? encode(data, encoding) : data;
    await this.berth.writeFile(this.session, this.#path(path), bytes);
  }

  async mkdir(path: string, options?: { recursive?: boolean }): Promise<any> {
    const full = this.#path(path);
    await this.berth.mkdir(this.session, full);
    return options?.recursive ? full : undefined;
  }

  async rm(path: string, options?: { force?: boolean; recursive?: boolean }): Promise<void> {
    try {
      await this.berth.remove(this.session, this.#path(path), options?.recursive ?? false);
    } catch (err) {
      if (!(options?.force && err instanceof BerthError && err.status === 404)) throw err;
    }
  }

  /** Replaces what `newPath` names, as Node's `fs.rename` does. */
  async rename(oldPath: string, newPath: string): Promise<void> {
    await this.berth.move(this.session, this.#path(oldPath), this.#path(newPath), true);
  }

  /** Changes under a path: `change` when a file's contents change, `rename` when something appears or goes. */
  watch(filename: string, optionsOrListener?: FSWatchOptions | FSWatchCallback, maybeListener?: FSWatchCallback): IFSWatcher {
    const listener = typeof optionsOrListener === "function" ? optionsOrListener : maybeListener;
    const options = typeof optionsOrListener === "object" && optionsOrListener ? optionsOrListener : {};
    const root = this.#path(filename);
    let closed = false;
    const opening = this.berth.watch(
      this.session,
      root,
      (event) => {
        const relative = event.path.startsWith(root + "/") ? event.path.slice(root.length + 1) : event.path;
        listener?.(event.change === "modified" ? "change" : "rename", relative);
      },
      options.recursive ?? false,
    );
    opening.then((subscription) => closed && subscription.close()).catch(() => {});
    return {
      close() {
        closed = true;
        opening.then((subscription) => subscription.close()).catch(() => {});
      },
    };
  }
}

/** A WebContainer path (relative, or absolute from the working directory) as a session path. */
function resolvePath(workdir: string, path: string): string {
  const parts: string[] = [];
  for (const part of path.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") parts.pop();
    else parts.push(part);
  }
  return parts.length ? `${workdir}/${parts.join("/")}` : workdir;
}

function textOrBytes(bytes: Uint8Array): string | Uint8Array {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return bytes;
  }
}

function decode(bytes: Uint8Array, encoding: BufferEncoding): string {
  switch (encoding) {
    case "utf8":
    case "utf-8":
      return new TextDecoder().decode(bytes);
    case "latin1":
    case "binary":
    case "ascii":
      return String.fromCharCode(...bytes);
    case "hex":
      return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    case "base64":
    case "base64url": {
      const text = btoa(String.fromCharCode(...bytes));
      return encoding === "base64" ? text : text.replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
    }
    default:
      throw new BerthError(400, "unsupported", `encoding ${encoding} is not supported; read bytes and decode them`);
  }
}

function encode(text: string, encoding: string): Uint8Array {
  switch (encoding) {
    case "latin1":
    case "binary":
    case "ascii":
      return Uint8Array.from(text, (c) => c.charCodeAt(0) & 0xff);
    case "hex":
      return Uint8Array.from(text.match(/../g) ?? [], (h) => parseInt(h, 16));
    case "base64":
    case "base64url":
      return Uint8Array.from(atob(text.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));
    default:
      throw new BerthError(400, "unsupported", `encoding ${encoding} is not supported; write bytes`);
  }
}

/** `**` any depth, `*` within a name, `?` one character: enough for export's includes and excludes. */
function globToRegExp(glob: string): RegExp {
  let pattern = "";
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === "*" && glob[i + 1] === "*") {
      pattern += ".*";
      i++;
      if (glob[i + 1] === "/") i++;
    } else if (c === "*") pattern += "[^/]*";
    else if (c === "?") pattern += "[^/]";
    else pattern += c.replace(/[.+^${}()|[\]\\]/g, "\\$&");
  }
  return new RegExp(`^${pattern}(/.*)?$`);
}
