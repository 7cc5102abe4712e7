// Cache warming in VS Code: after the cursor rests, send `ossEdge/warm` (the decision itself is in warm.ts).
import * as vscode from "vscode";
import { LanguageClient, State } from "vscode-languageclient/node";
import { warmParams } from "./warm";

/** `delay` is the server's effective `warmOnRestMs` (from `ossEdge/status`); undefined until it has answered. */
export function restWarming(client: () => LanguageClient | undefined, delay: () => number | undefined): vscode.Disposable {
  const lastEdits = new Map<string, number>(); // per document: output channels change too, and must not count
  let rest: NodeJS.Timeout | undefined;
  return vscode.Disposable.from(
    vscode.workspace.onDidChangeTextDocument((event) => {
      lastEdits.set(event.document.uri.toString(), Date.now());
    }),
    vscode.workspace.onDidCloseTextDocument((document) => {
      lastEdits.delete(document.uri.toString());
    }),
    vscode.window.onDidChangeTextEditorSelection((event) => {
      if (rest) clearTimeout(rest);
      const ms = delay() ?? 0;
      if (ms <= 0) return;
      const editor = event.textEditor;
      rest = setTimeout(() => {
        const active = editor.selection.active;
        const uri = editor.document.uri.toString();
        const params = warmParams(
          {
            uri,
            line: active.line,
            character: active.character,
            selections: editor.selections.length,
            empty: editor.selection.isEmpty,
          },
          ms,
          lastEdits.get(uri) ?? 0,
          Date.now(),
        );
        const running = client();
        if (params && running?.state === State.Running) void running.sendNotification("ossEdge/warm", params);
      }, ms);
    }),
    { dispose: () => rest && clearTimeout(rest) },
  );
}
