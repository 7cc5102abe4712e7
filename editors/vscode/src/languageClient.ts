// Starting `oss-edge lsp` as VS Code's language client, with the `ossEdge` settings synchronised to it.
import * as vscode from "vscode";
import { LanguageClient, LanguageClientOptions, State } from "vscode-languageclient/node";
import { ExplanationNote } from "./explanation";
import { EXPLAIN, ExplanationPanels } from "./explanationPanel";
import { probe } from "./probe";
import { findServer, ServerNotFound } from "./serverCommand";
import { initializationOptions } from "./settings";
import { StatusBar } from "./statusBar";

/** Find and start the server; undefined (after telling the user how to fix it) when there is none to start. */
export async function startClient(
  output: vscode.LogOutputChannel,
  status: StatusBar,
  panels: ExplanationPanels,
): Promise<LanguageClient | undefined> {
  const folders = (vscode.workspace.workspaceFolders ?? []).map((folder) => folder.uri.fsPath);
  const section = vscode.workspace.getConfiguration("ossEdge");
  let server;
  try {
    server = findServer(section.get<string>("serverPath", ""), folders, probe);
  } catch (error) {
    if (!(error instanceof ServerNotFound)) throw error;
    status.failed(error.message);
    const choice = await vscode.window.showErrorMessage(error.message, "Open Settings");
    if (choice) void vscode.commands.executeCommand("workbench.action.openSettings", "ossEdge.serverPath");
    return undefined;
  }
  output.info(`starting ${server.command} ${server.args.join(" ")} (found via ${server.source})`);
  const clientOptions: LanguageClientOptions = {
    documentSelector: [{ scheme: "file" }, { scheme: "untitled" }, { scheme: "vscode-notebook-cell" }],
    initializationOptions: initializationOptions(settingsObject(section)),
    synchronize: { configurationSection: "ossEdge" },
    outputChannel: output,
    middleware: {
      // The server's code action runs its explain command: show it in the panel instead of dropping the result.
      executeCommand: async (command, args, next) => (command === EXPLAIN ? panels.explain(args[0]) : next(command, args)),
    },
  };
  const client = new LanguageClient("ossEdge", "oss-edge", { command: server.command, args: server.args }, clientOptions);
  client.onDidChangeState((event) => {
    if (event.newState === State.Stopped) status.show({ state: "error", error: "the language server stopped" });
  });
  await client.start();
  client.onNotification("ossEdge/explanation", (note: ExplanationNote) => panels.route(note));
  return client;
}

function settingsObject(section: vscode.WorkspaceConfiguration): Record<string, unknown> {
  const values: Record<string, unknown> = {};
  for (const key of Object.keys(section)) {
    const value = section.get(key);
    if (typeof value !== "function") values[key] = value;
  }
  return values;
}
