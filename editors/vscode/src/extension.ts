// The VS Code side of oss-edge: start `oss-edge lsp`, let the language client provide inline completions, show
// explanations in a side panel as they stream, and keep a status bar item. Every feature lives in the server.
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as vscode from "vscode";
import {
  ExecuteCommandRequest,
  LanguageClient,
  LanguageClientOptions,
  ServerOptions,
  State,
} from "vscode-languageclient/node";
import { Explanation, ExplanationNote } from "./explanation";
import { findServer, Probe, ServerNotFound } from "./serverCommand";
import { initializationOptions } from "./settings";
import { ServerStatus, statusView } from "./status";
import { warmParams } from "./warm";

const EXPLAIN = "ossEdge.explainSelection";
let client: LanguageClient | undefined;
let output: vscode.LogOutputChannel;
let statusItem: vscode.StatusBarItem;
const explanations: { explanation: Explanation; render: () => void }[] = [];

const probe: Probe = {
  platform: process.platform,
  exists: (file) => fs.existsSync(file),
  which: (name) => {
    for (const dir of (process.env.PATH ?? "").split(process.platform === "win32" ? ";" : ":")) {
      const candidate = `${dir}/${name}`;
      if (dir && fs.existsSync(candidate)) return candidate;
    }
    return undefined;
  },
  pythonHasModule: (python, module) => {
    try {
      execFileSync(python, ["-c", `import importlib.util,sys; sys.exit(importlib.util.find_spec("${module}") is None)`], {
        timeout: 10000,
      });
      return true;
    } catch {
      return false;
    }
  },
};

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  output = vscode.window.createOutputChannel("oss-edge", { log: true });
  statusItem = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Right, 100);
  statusItem.command = "ossEdge.showOutput";
  context.subscriptions.push(
    output,
    statusItem,
    vscode.commands.registerCommand("ossEdge.restart", () => restart()),
    vscode.commands.registerCommand("ossEdge.showOutput", () => output.show()),
    vscode.commands.registerCommand("ossEdge.explain", () => explainActiveSelection()),
  );
  const timer = setInterval(() => void refreshStatus(), 2000);
  context.subscriptions.push({ dispose: () => clearInterval(timer) });
  const lastEdits = new Map<string, number>(); // per document: output channels change too, and must not count
  let rest: NodeJS.Timeout | undefined;
  context.subscriptions.push(
    vscode.workspace.onDidChangeTextDocument((event) => {
      lastEdits.set(event.document.uri.toString(), Date.now());
    }),
    vscode.workspace.onDidCloseTextDocument((document) => {
      lastEdits.delete(document.uri.toString());
    }),
    vscode.window.onDidChangeTextEditorSelection((event) => {
      if (rest) clearTimeout(rest);
      const delay = vscode.workspace.getConfiguration("ossEdge").get<number>("warmOnRestMs", 500);
      if (delay <= 0) return;
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
          delay,
          lastEdits.get(uri) ?? 0,
          Date.now(),
        );
        if (params && client?.state === State.Running) void client.sendNotification("ossEdge/warm", params);
      }, delay);
    }),
    { dispose: () => rest && clearTimeout(rest) },
  );
  await start();
}

export async function deactivate(): Promise<void> {
  await client?.stop();
}

async function start(): Promise<void> {
  const folders = (vscode.workspace.workspaceFolders ?? []).map((folder) => folder.uri.fsPath);
  const section = vscode.workspace.getConfiguration("ossEdge");
  let server;
  try {
    server = findServer(section.get<string>("serverPath", ""), folders, probe);
  } catch (error) {
    if (error instanceof ServerNotFound) {
      statusItem.text = "$(error) oss-edge";
      statusItem.tooltip = error.message;
      statusItem.show();
      const choice = await vscode.window.showErrorMessage(error.message, "Open Settings");
      if (choice) void vscode.commands.executeCommand("workbench.action.openSettings", "ossEdge.serverPath");
      return;
    }
    throw error;
  }
  output.info(`starting ${server.command} ${server.args.join(" ")} (found via ${server.source})`);
  const serverOptions: ServerOptions = { command: server.command, args: server.args };
  const clientOptions: LanguageClientOptions = {
    documentSelector: [{ scheme: "file" }, { scheme: "untitled" }, { scheme: "vscode-notebook-cell" }],
    initializationOptions: initializationOptions(settingsObject(section)),
    synchronize: { configurationSection: "ossEdge" },
    outputChannel: output,
    middleware: {
      // The server's code action runs its explain command: show it in the panel instead of dropping the result.
      executeCommand: async (command, args, next) => (command === EXPLAIN ? explain(args[0]) : next(command, args)),
    },
  };
  client = new LanguageClient("ossEdge", "oss-edge", serverOptions, clientOptions);
  client.onDidChangeState((event) => {
    if (event.newState === State.Stopped) setStatus({ state: "error", error: "the language server stopped" });
  });
  await client.start();
  client.onNotification("ossEdge/explanation", (note: ExplanationNote) => route(note));
  statusItem.show();
  await refreshStatus();
}

async function restart(): Promise<void> {
  if (client) {
    await client.stop();
    client = undefined;
  }
  await start();
}

function settingsObject(section: vscode.WorkspaceConfiguration): Record<string, unknown> {
  const values: Record<string, unknown> = {};
  for (const key of Object.keys(section)) {
    const value = section.get(key);
    if (typeof value !== "function") values[key] = value;
  }
  return values;
}

async function refreshStatus(): Promise<void> {
  if (!client || client.state !== State.Running) return;
  try {
    setStatus(await client.sendRequest<ServerStatus>("ossEdge/status"));
  } catch {
    // the server is restarting; the next tick will tell
  }
}

function setStatus(status: ServerStatus | undefined): void {
  const view = statusView(status);
  statusItem.text = view.text;
  statusItem.tooltip = view.tooltip;
  statusItem.backgroundColor = view.problem ? new vscode.ThemeColor("statusBarItem.warningBackground") : undefined;
  statusItem.show();
}

function route(note: ExplanationNote): void {
  for (const open of explanations) {
    if (open.explanation.id === note.id || (open.explanation.id === undefined && !open.explanation.done)) {
      if (open.explanation.add(note)) {
        open.render();
        return;
      }
    }
  }
}

async function explainActiveSelection(): Promise<void> {
  const editor = vscode.window.activeTextEditor;
  if (!editor || editor.selection.isEmpty) {
    void vscode.window.showInformationMessage("oss-edge: select the code to explain first.");
    return;
  }
  const { start, end } = editor.selection;
  await explain({
    uri: editor.document.uri.toString(),
    range: { start: { line: start.line, character: start.character }, end: { line: end.line, character: end.character } },
  });
}

async function explain(argument: unknown): Promise<unknown> {
  if (!client) {
    void vscode.window.showErrorMessage("oss-edge: the language server is not running.");
    return undefined;
  }
  const spec = argument as { uri: string; range: { start: { line: number }; end: { line: number } } };
  const title = `Explain ${vscode.Uri.parse(spec.uri).path.split("/").pop()}:${spec.range.start.line + 1}-${spec.range.end.line + 1}`;
  const panel = vscode.window.createWebviewPanel("ossEdge.explanation", title, {
    viewColumn: vscode.ViewColumn.Beside,
    preserveFocus: true,
  });
  const explanation = new Explanation(title);
  const cancel = new vscode.CancellationTokenSource();
  let pending: NodeJS.Timeout | undefined;
  const render = (): void => {
    if (pending) return;
    pending = setTimeout(async () => {
      pending = undefined;
      const html = await vscode.commands.executeCommand<string>("markdown.api.render", explanation.markdown());
      panel.webview.html = page(title, html);
    }, 80);
  };
  const entry = { explanation, render };
  explanations.push(entry);
  panel.onDidDispose(() => {
    cancel.cancel(); // closing the panel stops the generation
    explanations.splice(explanations.indexOf(entry), 1);
  });
  render();
  try {
    const markdown = await client.sendRequest(
      ExecuteCommandRequest.type,
      { command: EXPLAIN, arguments: [argument] },
      cancel.token,
    );
    explanation.add({ id: explanation.id ?? "", channel: "final", delta: "", done: true, markdown: String(markdown ?? "") });
    render();
    return markdown;
  } catch (error) {
    if (!cancel.token.isCancellationRequested) {
      void vscode.window.showErrorMessage(`oss-edge: the explanation failed: ${String(error)}`);
    }
    return undefined;
  }
}

function page(title: string, body: string): string {
  return `<!DOCTYPE html><html><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline';">
<title>${title.replace(/</g, "&lt;")}</title>
<style>body{font-family:var(--vscode-font-family);line-height:1.5;padding:0 1em}
code,pre{font-family:var(--vscode-editor-font-family)}</style></head><body>${body}</body></html>`;
}
