// Compiled, never run (`npm run check-compat`): @berth/webcontainer against the types of
// @webcontainer/api 1.6 itself. Every value it exports exists here, and everything an app gets
// from ours fits where the app expects theirs (and the reverse for what the app hands in).
import * as Theirs from "@webcontainer/api";
import * as Ours from "../src/index.js";

/** The public members of a class instance (private ones make classes nominal in TypeScript). */
type Public<T> = { [K in keyof T]: T[K] };

// Every value export, by name, with their type.
const values: { [K in keyof typeof Theirs]: unknown } = Ours;
const boot: (options?: Theirs.BootOptions) => Promise<Public<Theirs.WebContainer>> = Ours.WebContainer.boot;
const configureAPIKey: typeof Theirs.configureAPIKey = Ours.configureAPIKey;
const auth: typeof Theirs.auth = Ours.auth;
const reloadPreview: typeof Theirs.reloadPreview = Ours.reloadPreview;
const isPreviewMessage: typeof Theirs.isPreviewMessage = Ours.isPreviewMessage;
// Enums are nominal: the string values are what must agree.
const messageTypes: `${Theirs.PreviewMessageType}`[] = Object.values(Ours.PreviewMessageType);
const theirMessageTypes: `${Ours.PreviewMessageType}`[] = [
  "PREVIEW_UNCAUGHT_EXCEPTION",
  "PREVIEW_UNHANDLED_REJECTION",
  "PREVIEW_CONSOLE_ERROR",
] satisfies `${Theirs.PreviewMessageType}`[];

// An instance, member by member, and what its members hand out.
declare const container: Ours.WebContainer;
const instance: Public<Theirs.WebContainer> = container;
const fs: Theirs.FileSystemAPI = container.fs;
declare const process: Ours.WebContainerProcess;
const theirProcess: Theirs.WebContainerProcess = process;
declare const watcher: Ours.IFSWatcher;
const theirWatcher: Theirs.IFSWatcher = watcher;

// What apps hand in: their options and trees are ours.
declare const bootOptions: Theirs.BootOptions;
const ourBootOptions: Ours.BootOptions = bootOptions;
declare const spawnOptions: Theirs.SpawnOptions;
const ourSpawnOptions: Ours.SpawnOptions = spawnOptions;
declare const exportOptions: Theirs.ExportOptions;
const ourExportOptions: Ours.ExportOptions = exportOptions;
declare const loadOptions: Theirs.LoadFilesOptions;
const ourLoadOptions: Ours.LoadFilesOptions = loadOptions;
declare const tree: Theirs.FileSystemTree;
const ourTree: Ours.FileSystemTree = tree;
declare const watchOptions: Theirs.FSWatchOptions;
const ourWatchOptions: Ours.FSWatchOptions = watchOptions;
declare const previewOptions: Theirs.PreviewScriptOptions;
const ourPreviewOptions: Ours.PreviewScriptOptions = previewOptions;
declare const authInit: Theirs.AuthInitOptions;
const ourAuthInit: Ours.AuthInitOptions = authInit;

// Listener types: theirs fit our `on`, with the same event names.
declare const portListener: Theirs.PortListener;
declare const readyListener: Theirs.ServerReadyListener;
declare const errorListener: Theirs.ErrorListener;
declare const messageListener: Theirs.PreviewMessageListener;
declare const openListener: Theirs.OpenListener;
declare const codeListener: Theirs.CodeListener;
const unsubscribes: Theirs.Unsubscribe[] = [
  container.on("port", portListener),
  container.on("server-ready", readyListener),
  container.on("error", errorListener),
  container.on("xdg-open", openListener),
  container.on("code", codeListener),
];
// Preview messages' types are each side's own enum: the shapes must agree but for it.
type WithoutType<T> = Omit<T, "type">;
declare const message: WithoutType<Theirs.PreviewMessage>;
const ourMessage: WithoutType<Ours.PreviewMessage> = message;
declare const ourEvent: Ours.CodeEvent;
const theirEvent: Theirs.CodeEvent = ourEvent;
declare const ourDirEnt: Ours.DirEnt<string>;
const theirDirEnt: Theirs.DirEnt<string> = ourDirEnt;
declare const ourEncoding: Ours.BufferEncoding;
const theirEncoding: Theirs.BufferEncoding = ourEncoding;

export {
  values,
  boot,
  configureAPIKey,
  auth,
  reloadPreview,
  isPreviewMessage,
  messageTypes,
  theirMessageTypes,
  instance,
  fs,
  theirProcess,
  theirWatcher,
  ourBootOptions,
  ourSpawnOptions,
  ourExportOptions,
  ourLoadOptions,
  ourTree,
  ourWatchOptions,
  ourPreviewOptions,
  ourAuthInit,
  unsubscribes,
  messageListener,
  ourMessage,
  theirEvent,
  theirDirEnt,
  theirEncoding,
};
