// The VS Code side of oss-edge: activation only. It starts `oss-edge lsp` (languageClient.ts), whose inline
// completions the language client shows itself; explanations stream into side panels (explanationPanel.ts); a
// status bar item follows the server (statusBar.ts); a resting cursor warms the cache (restWarming.ts). Every
// feature lives in the server.
import * as vscode from "vscode";
import { LanguageClient } from "vscode-languageclient/node";
import { ExplanationPanels } from "./explanationPanel";
import { startClient } from "./languageClient";
import { restWarming } from "./restWarming";
import { StatusBar } from "./statusBar";

let client: LanguageClient | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  const output = vscode.window.createOutputChannel("oss-edge", { log: true });
  const status = new StatusBar(() => client);
  const panels = new ExplanationPanels(() => client);
  const start = async (): Promise<void> => {
    client = await startClient(output, status, panels);
    if (client) await status.refresh();
  };
  context.subscriptions.push(
    output,
    status,
    restWarming(() => client, () => status.last?.warmOnRestMs ?? undefined),
    vscode.commands.registerCommand("ossEdge.restart", async () => {
      await client?.stop();
      client = undefined;
      await start();
    }),
    vscode.commands.registerCommand("ossEdge.showOutput", () => output.show()),
    vscode.commands.registerCommand("ossEdge.explain", () => panels.explainActiveSelection()),
  );
  await start();
}

export async function deactivate(): Promise<void> {
  await client?.stop();
}
