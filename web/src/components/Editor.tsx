// Open files as tabs in one CodeMirror view: syntax highlighting by extension, Ctrl/Cmd-S
// saves, a dot marks unsaved changes.
import { useEffect, useRef } from "preact/hooks";
import { EditorView, basicSetup } from "codemirror";
import { Compartment, EditorState, type Extension } from "@codemirror/state";
import { keymap } from "@codemirror/view";
import { python } from "@codemirror/lang-python";
import { javascript } from "@codemirror/lang-javascript";
import { json } from "@codemirror/lang-json";
import { html } from "@codemirror/lang-html";
import { css } from "@codemirror/lang-css";
import { markdown } from "@codemirror/lang-markdown";
import { oneDark } from "@codemirror/theme-one-dark";
import { baseName, languageOf } from "../lib/format";
import type { Theme } from "../app";

export interface OpenFile {
  path: string;
  /** What is saved on the session's disk. */
  saved: string;
  /** What the editor holds now. */
  text: string;
}

function language(path: string): Extension {
  switch (languageOf(path)) {
    case "python":
      return python();
    case "javascript":
      return javascript({ jsx: true });
    case "typescript":
      return javascript({ typescript: true, jsx: true });
    case "json":
      return json();
    case "html":
      return html();
    case "css":
      return css();
    case "markdown":
      return markdown();
    default:
      return [];
  }
}

interface Props {
  files: OpenFile[];
  active: string | null;
  theme: Theme;
  onSelect: (path: string) => void;
  onClose: (path: string) => void;
  onChange: (path: string, text: string) => void;
  onSave: (path: string) => void;
}

export function Editor({ files, active, theme, onSelect, onClose, onChange, onSave }: Props) {
  const host = useRef<HTMLDivElement>(null);
  const view = useRef<EditorView | null>(null);
  const themeSlot = useRef(new Compartment());
  // Each file keeps its own editor state (undo history, selection) while another is shown.
  const states = useRef(new Map<string, EditorState>());
  const callbacks = useRef({ onChange, onSave });
  callbacks.current = { onChange, onSave };
  const shown = useRef<string | null>(null);

  const stateFor = (file: OpenFile): EditorState => {
    const existing = states.current.get(file.path);
    if (existing) return existing;
    const state = EditorState.create({
      doc: file.text,
      extensions: [
        keymap.of([
          {
            key: "Mod-s",
            preventDefault: true,
            run: () => {
              callbacks.current.onSave(file.path);
              return true;
            },
          },
        ]),
        basicSetup,
        language(file.path),
        themeSlot.current.of(theme === "dark" ? oneDark : []),
        EditorView.updateListener.of((update) => {
          if (update.docChanged) callbacks.current.onChange(file.path, update.state.doc.toString());
        }),
      ],
    });
    states.current.set(file.path, state);
    return state;
  };

  useEffect(() => {
    view.current = new EditorView({ parent: host.current! });
    return () => view.current?.destroy();
  }, []);

  useEffect(() => {
    const editor = view.current;
    if (!editor) return;
    if (shown.current) states.current.set(shown.current, editor.state);
    for (const path of [...states.current.keys()]) {
      if (!files.some((f) => f.path === path)) states.current.delete(path);
    }
    const file = files.find((f) => f.path === active);
    shown.current = file?.path ?? null;
    if (file) {
      editor.setState(stateFor(file));
      editor.dispatch({ effects: themeSlot.current.reconfigure(theme === "dark" ? oneDark : []) });
      editor.focus();
    }
  }, [active, files.length]);

  useEffect(() => {
    view.current?.dispatch({ effects: themeSlot.current.reconfigure(theme === "dark" ? oneDark : []) });
  }, [theme]);

  return (
    <div class="editor">
      <div class="tabs">
        {files.map((f) => (
          <div key={f.path} class={`tab ${f.path === active ? "active" : ""}`} title={f.path} onClick={() => onSelect(f.path)}>
            {baseName(f.path)}
            {f.text !== f.saved && <span class="dirty" title="Unsaved changes (Ctrl/Cmd-S saves)">●</span>}
            <button
              class="close"
              title="Close"
              onClick={(e) => {
                e.stopPropagation();
                onClose(f.path);
              }}
            >
              ×
            </button>
          </div>
        ))}
        {files.length === 0 && <div class="tab muted">Open a file from the tree</div>}
      </div>
      <div class={`editor-host ${active ? "" : "hidden"}`} ref={host} />
    </div>
  );
}
