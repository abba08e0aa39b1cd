// The session's files under /home/user: expand folders, create, rename, delete, download, and
// upload by button or drag and drop, with progress. Changes made elsewhere (the terminal)
// show up through the files watch.
import { useEffect, useRef, useState } from "preact/hooks";
import { api, socketUrl, type FileEntry } from "../api";
import { baseName, bytes, joinPath, parentOf } from "../lib/format";
import { toast, toastError } from "../toasts";

export const HOME = "/home/user";

interface Upload {
  name: string;
  fraction: number;
}

interface Props {
  sessionId: string;
  onOpen: (path: string) => void;
  /** A file was removed or renamed away: the editor closes it. */
  onGone: (path: string) => void;
}

type Creating = { kind: "file" | "dir"; dir: string } | { kind: "rename"; entry: FileEntry } | null;

export function FileTree({ sessionId, onOpen, onGone }: Props) {
  const [dirs, setDirs] = useState<Record<string, FileEntry[]>>({});
  const [expanded, setExpanded] = useState<Set<string>>(new Set([HOME]));
  const [selected, setSelected] = useState<string | null>(null);
  const [editing, setEditing] = useState<Creating>(null);
  const [uploads, setUploads] = useState<Upload[]>([]);
  const [dropTarget, setDropTarget] = useState<string | null>(null);
  const picker = useRef<HTMLInputElement>(null);
  // Enter submits and the input's blur follows: the ref makes sure only the first one acts.
  const pending = useRef<Creating>(null);
  pending.current = editing;
  const loaded = useRef(dirs);
  loaded.current = dirs;

  const load = async (dir: string) => {
    try {
      const entries = await api.list(sessionId, dir);
      entries.sort((a, b) => (a.type === "dir") !== (b.type === "dir") ? (a.type === "dir" ? -1 : 1) : a.name.localeCompare(b.name));
      setDirs((d) => ({ ...d, [dir]: entries }));
    } catch (err) {
      toastError(`Could not list ${dir}`, err);
    }
  };

  useEffect(() => {
    load(HOME);
    // Reload a listed folder whenever something in it changes.
    const watch = new WebSocket(socketUrl(sessionId, "files/watch", { path: HOME }));
    let stale = new Set<string>();
    let timer: number | undefined;
    watch.onmessage = (event) => {
      try {
        const change = JSON.parse(event.data);
        const dir = parentOf(change.path);
        if (loaded.current[dir]) stale.add(dir);
        clearTimeout(timer);
        timer = window.setTimeout(() => {
          stale.forEach(load);
          stale = new Set();
        }, 150);
      } catch {
        // not a change event
      }
    };
    return () => {
      clearTimeout(timer);
      watch.close();
    };
  }, [sessionId]);

  const toggle = (dir: string) => {
    const next = new Set(expanded);
    if (next.has(dir)) next.delete(dir);
    else {
      next.add(dir);
      load(dir);
    }
    setExpanded(next);
  };

  /** The folder new things go into: the selected folder, or the selected file's folder. */
  const targetDir = (): string => {
    if (!selected) return HOME;
    const isDir = Object.values(dirs).some((entries) => entries.some((e) => e.path === selected && e.type === "dir"));
    return isDir ? selected : parentOf(selected);
  };

  const submitName = async (name: string) => {
    const action = pending.current;
    pending.current = null;
    setEditing(null);
    if (!action || !name.trim()) return;
    try {
      if (action.kind === "rename") {
        const to = joinPath(parentOf(action.entry.path), name.trim());
        await api.move(sessionId, action.entry.path, to);
        onGone(action.entry.path);
        await load(parentOf(action.entry.path));
        if (parentOf(to) !== parentOf(action.entry.path)) await load(parentOf(to));
        toast(`Renamed to ${baseName(to)}`);
      } else {
        const path = joinPath(action.dir, name.trim());
        if (action.kind === "dir") await api.mkdir(sessionId, path);
        else await api.write(sessionId, path, "");
        await load(parentOf(path));
        setSelected(path);
        if (action.kind === "file") onOpen(path);
      }
    } catch (err) {
      toastError(action.kind === "rename" ? "Rename failed" : "Create failed", err);
    }
  };

  const remove = async (entry: FileEntry) => {
    if (!confirm(`Delete ${entry.path}${entry.type === "dir" ? " and everything in it" : ""}?`)) return;
    try {
      await api.remove(sessionId, entry.path);
      onGone(entry.path);
      await load(parentOf(entry.path));
      toast(`Deleted ${entry.name}`);
    } catch (err) {
      toastError(`Could not delete ${entry.name}`, err);
    }
  };

  const upload = async (files: FileList | File[], dir: string) => {
    for (const file of Array.from(files)) {
      const item: Upload = { name: file.name, fraction: 0 };
      setUploads((u) => [...u, item]);
      try {
        await api.upload(sessionId, joinPath(dir, file.name), file, (fraction) => {
          item.fraction = fraction;
          setUploads((u) => [...u]);
        });
        toast(`Uploaded ${file.name} (${bytes(file.size)})`);
      } catch (err) {
        toastError(`Upload of ${file.name} failed`, err);
      } finally {
        setUploads((u) => u.filter((x) => x !== item));
      }
    }
    await load(dir);
  };

  const onDrop = (e: DragEvent, dir: string) => {
    e.preventDefault();
    e.stopPropagation();
    setDropTarget(null);
    if (e.dataTransfer?.files.length) upload(e.dataTransfer.files, dir);
  };
  const onDragOver = (e: DragEvent, dir: string) => {
    e.preventDefault();
    e.stopPropagation();
    setDropTarget(dir);
  };

  // Uncontrolled: the workspace re-renders every second (its countdown), and a controlled
  // value would put back `initial` over what the user is typing.
  const nameInput = (initial: string) => (
    <input
      class="name-input"
      autoFocus
      defaultValue={initial}
      placeholder="name"
      onKeyDown={(e) => {
        if (e.key === "Enter") submitName((e.target as HTMLInputElement).value);
        if (e.key === "Escape") setEditing(null);
      }}
      onBlur={(e) => submitName((e.target as HTMLInputElement).value)}
    />
  );

  const renderDir = (dir: string, depth: number) => {
    const entries = dirs[dir];
    return (
      <ul class="tree-list">
        {editing && editing.kind !== "rename" && editing.dir === dir && (
          <li style={{ paddingLeft: `${depth * 12 + 8}px` }}>
            <span class="icon">{editing.kind === "dir" ? "▸" : ""}</span>
            {nameInput("")}
          </li>
        )}
        {entries === undefined && <li class="muted" style={{ paddingLeft: `${depth * 12 + 8}px` }}>…</li>}
        {entries?.map((entry) => {
          const isDir = entry.type === "dir";
          const open = expanded.has(entry.path);
          const renaming = editing?.kind === "rename" && editing.entry.path === entry.path;
          return (
            <li key={entry.path}>
              <div
                class={`tree-row ${selected === entry.path ? "selected" : ""} ${dropTarget === entry.path ? "drop" : ""}`}
                style={{ paddingLeft: `${depth * 12 + 8}px` }}
                data-path={entry.path}
                onClick={() => {
                  setSelected(entry.path);
                  if (isDir) toggle(entry.path);
                  else onOpen(entry.path);
                }}
                onDragOver={isDir ? (e) => onDragOver(e, entry.path) : undefined}
                onDrop={isDir ? (e) => onDrop(e, entry.path) : undefined}
              >
                <span class="icon">{isDir ? (open ? "▾" : "▸") : ""}</span>
                {renaming ? nameInput(entry.name) : <span class="name">{entry.name}</span>}
                <span class="row-actions" onClick={(e) => e.stopPropagation()}>
                  {!isDir && (
                    <a title="Download" href={api.downloadUrl(sessionId, entry.path)} download={entry.name}>
                      ⤓
                    </a>
                  )}
                  <button title="Rename" onClick={() => setEditing({ kind: "rename", entry })}>
                    ✎
                  </button>
                  <button title="Delete" onClick={() => remove(entry)}>
                    ✕
                  </button>
                </span>
              </div>
              {isDir && open && renderDir(entry.path, depth + 1)}
            </li>
          );
        })}
      </ul>
    );
  };

  return (
    <div
      class={`file-tree ${dropTarget === HOME ? "drop" : ""}`}
      onDragOver={(e) => onDragOver(e, HOME)}
      onDragLeave={() => setDropTarget(null)}
      onDrop={(e) => onDrop(e, dropTarget && dropTarget !== HOME ? dropTarget : HOME)}
    >
      <div class="pane-header">
        <span>Files</span>
        <span class="spacer" />
        <button title="New file" onClick={() => setEditing({ kind: "file", dir: targetDir() })}>
          + File
        </button>
        <button title="New folder" onClick={() => setEditing({ kind: "dir", dir: targetDir() })}>
          + Folder
        </button>
        <button title="Upload files" onClick={() => picker.current?.click()}>
          ⤒
        </button>
        <button title="Refresh" onClick={() => Object.keys(dirs).forEach(load)}>
          ⟳
        </button>
        <input
          ref={picker}
          type="file"
          multiple
          hidden
          data-testid="upload-input"
          onChange={(e) => {
            const input = e.target as HTMLInputElement;
            if (input.files?.length) upload(input.files, targetDir());
            input.value = "";
          }}
        />
      </div>
      <div class="tree-scroll">
        {renderDir(HOME, 0)}
        <p class="muted hint">Drop files here to upload.</p>
      </div>
      {uploads.length > 0 && (
        <div class="uploads">
          {uploads.map((u, i) => (
            <div key={i} class="upload">
              <span>{u.name}</span>
              <progress max={1} value={u.fraction} />
            </div>
          ))}
        </div>
      )}
    </div>
  );
}
