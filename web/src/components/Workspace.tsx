// One session: files on the left, editor over terminals in the middle, previews on the right.
// A page that guides the work (a lab's steps) puts its panel left of the files.
import type { ComponentChildren } from "preact";
import { useEffect, useState } from "preact/hooks";
import { api, socketUrl, type Session } from "../api";
import {
  beaconDue,
  baseName,
  countdown,
  diskNotice,
  idleNotice,
  restartNotice,
  stateInWords,
  wakeNotice,
} from "../lib/format";
import { savedTerminals, saveTerminals } from "../lib/terminals";
import { toast, toastError } from "../toasts";
import type { Theme } from "../app";
import { Editor, type OpenFile } from "./Editor";
import { FileTree } from "./FileTree";
import { Preview } from "./Preview";
import { Snapshots } from "./Snapshots";
import { useNow } from "./Sessions";
import { TerminalView } from "./Terminal";
import { TimelinePanel } from "./Timeline";

interface Tab {
  key: number;
  terminalId?: string;
}

let nextTab = 1;

export function Workspace({ id, theme, aside }: { id: string; theme: Theme; aside?: ComponentChildren }) {
  const [session, setSession] = useState<Session | null>(null);
  const [restarted, setRestarted] = useState<string | null>(null);
  const [sleepsAt, setSleepsAt] = useState<Date | null>(null);
  const [diskFull, setDiskFull] = useState<{ usedMb: number; limitMb: number } | null>(null);
  const [files, setFiles] = useState<OpenFile[]>([]);
  const [activeFile, setActiveFile] = useState<string | null>(null);
  const [tabs, setTabs] = useState<Tab[]>(() => {
    const saved = savedTerminals(id).map((terminalId) => ({ key: nextTab++, terminalId }));
    return saved.length ? saved : [{ key: nextTab++ }];
  });
  const [activeTab, setActiveTab] = useState(tabs[0].key);
  const now = useNow();

  useEffect(() => {
    const load = () => {
      api.session(id).then(setSession, (err) => {
        toastError(`Session ${id}`, err);
        location.hash = "#/";
      });
      api.timeline(id).then((events) => setRestarted(restartNotice(events)), () => {});
    };
    load();
    const timer = setInterval(load, 15000);
    return () => clearInterval(timer);
  }, [id]);

  // A session asleep or waking is looked at again soon: its badge says "running" as soon as
  // it is.
  useEffect(() => {
    if (!session || !["hibernating", "hibernated", "restoring"].includes(session.state)) return;
    const timer = setTimeout(() => api.session(id).then(setSession, () => {}), 1500);
    return () => clearTimeout(timer);
  }, [session]);

  // The idle policy's warnings, and a presence beacon while someone uses the keyboard or mouse
  // (an open tab alone keeps nothing awake).
  useEffect(() => {
    const events = new WebSocket(socketUrl(id, "events"));
    events.onmessage = (event) => {
      if (typeof event.data !== "string") return;
      const notice = idleNotice(event.data);
      if (notice === "cancelled") setSleepsAt(null);
      else if (notice) setSleepsAt(notice.sleepsAt);
      const disk = diskNotice(event.data);
      if (disk) setDiskFull(disk);
    };
    let lastBeacon = 0;
    const present = () => {
      const now = Date.now();
      if (!beaconDue(lastBeacon, now)) return;
      lastBeacon = now;
      api.beacon(id).catch(() => {});
    };
    const kinds = ["keydown", "mousedown", "focus"] as const;
    kinds.forEach((kind) => window.addEventListener(kind, present));
    return () => {
      events.close();
      kinds.forEach((kind) => window.removeEventListener(kind, present));
    };
  }, [id]);

  const keepWorking = async () => {
    try {
      setSession(await api.keepalive(id, 3600));
      setSleepsAt(null);
      toast("The session stays awake for the next hour");
    } catch (err) {
      toastError("Could not keep the session awake", err);
    }
  };

  useEffect(() => {
    saveTerminals(
      id,
      tabs.flatMap((t) => (t.terminalId ? [t.terminalId] : [])),
    );
  }, [tabs]);

  const openFile = async (path: string) => {
    if (files.some((f) => f.path === path)) return setActiveFile(path);
    try {
      const text = await api.read(id, path);
      setFiles((f) => (f.some((x) => x.path === path) ? f : [...f, { path, saved: text, text }]));
      setActiveFile(path);
    } catch (err) {
      toastError(`Could not open ${baseName(path)}`, err);
    }
  };

  const closeFile = (path: string) => {
    const file = files.find((f) => f.path === path);
    if (file && file.text !== file.saved && !confirm(`${baseName(path)} has unsaved changes. Close it anyway?`)) return;
    const rest = files.filter((f) => f.path !== path);
    setFiles(rest);
    if (activeFile === path) setActiveFile(rest[rest.length - 1]?.path ?? null);
  };

  const saveFile = async (path: string) => {
    const file = files.find((f) => f.path === path);
    if (!file) return;
    const text = file.text;
    try {
      await api.write(id, path, text);
      setFiles((all) => all.map((f) => (f.path === path ? { ...f, saved: text } : f)));
      toast(`Saved ${baseName(path)}`);
    } catch (err) {
      toastError(`Could not save ${baseName(path)}`, err);
    }
  };

  const newTab = () => {
    const tab = { key: nextTab++ };
    setTabs((t) => [...t, tab]);
    setActiveTab(tab.key);
  };
  const closeTab = (key: number) => {
    setTabs((all) => {
      const rest = all.filter((t) => t.key !== key);
      if (rest.length === 0) rest.push({ key: nextTab++ });
      if (key === activeTab) setActiveTab(rest[rest.length - 1].key);
      return rest;
    });
  };

  const extend = async () => {
    try {
      setSession(await api.extendSession(id, 3600));
      toast("The session runs one more hour from now");
    } catch (err) {
      toastError("Could not extend", err);
    }
  };

  return (
    <div class="workspace">
      <div class="workspace-bar">
        <a href="#/">← Sessions</a>
        <strong>{id}</strong>
        {session && (
          <>
            <span class={`badge state-${session.state}`}>{stateInWords(session.state, session.stop_reason)}</span>
            <span class="muted" title={new Date(session.expires_at).toLocaleString()}>
              expires in {countdown(session.expires_at, now)}
            </span>
            <button onClick={extend}>+1 h</button>
            <Snapshots sessionId={id} template={session.template} />
            <TimelinePanel sessionId={id} />
          </>
        )}
        {session && wakeNotice(session.state, session.wake_estimate_ms, session.wake_queue_position) && (
          <span class="notice waking">
            {wakeNotice(session.state, session.wake_estimate_ms, session.wake_queue_position)}
          </span>
        )}
        {restarted && <span class="notice restarted">{restarted}</span>}
        {diskFull && (
          <span class="notice disk-warning">
            This session's files take {diskFull.usedMb} MiB of the {diskFull.limitMb} MiB it may use: past that it is
            stopped. Delete what you don't need.
          </span>
        )}
        {sleepsAt && (
          <span class="notice idle-warning">
            Nobody has worked here for a while: this session goes to sleep at {sleepsAt.toLocaleTimeString()} (your files
            are kept). <button onClick={keepWorking}>Keep working</button>
          </span>
        )}
      </div>
      <div class={`workspace-grid ${aside ? "with-aside" : ""}`}>
        {aside && <aside class="workspace-aside">{aside}</aside>}
        <FileTree sessionId={id} onOpen={openFile} onGone={(path) => setFiles((f) => f.filter((x) => x.path !== path))} />
        <div class="middle">
          <Editor
            files={files}
            active={activeFile}
            theme={theme}
            onSelect={setActiveFile}
            onClose={closeFile}
            onChange={(path, text) => setFiles((all) => all.map((f) => (f.path === path ? { ...f, text } : f)))}
            onSave={saveFile}
          />
          <div class="terminals">
            <div class="tabs">
              {tabs.map((tab, i) => (
                <div key={tab.key} class={`tab ${tab.key === activeTab ? "active" : ""}`} onClick={() => setActiveTab(tab.key)}>
                  Terminal {i + 1}
                  <button
                    class="close"
                    title="Close this tab (the terminal keeps running until its shell exits)"
                    onClick={(e) => {
                      e.stopPropagation();
                      closeTab(tab.key);
                    }}
                  >
                    ×
                  </button>
                </div>
              ))}
              <button class="ghost" title="New terminal" onClick={newTab}>
                +
              </button>
            </div>
            {tabs.map((tab) => (
              <TerminalView
                key={tab.key}
                sessionId={id}
                terminalId={tab.terminalId}
                active={tab.key === activeTab}
                theme={theme}
                onReady={(terminalId) => setTabs((all) => all.map((t) => (t.key === tab.key ? { ...t, terminalId } : t)))}
                onGone={(missing) => {
                  // A terminal the server lost is replaced by a new one in the same tab.
                  const replacement = { key: missing ? nextTab++ : tab.key };
                  setTabs((all) => all.map((t) => (t.key === tab.key ? replacement : t)));
                  // The terminal keeps the callbacks of its first render: read the active tab now.
                  if (missing) setActiveTab((active) => (active === tab.key ? replacement.key : active));
                }}
              />
            ))}
          </div>
        </div>
        <Preview sessionId={id} />
      </div>
    </div>
  );
}
