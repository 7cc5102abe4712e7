// Explain Selection in VS Code: one webview panel per explanation, filled as `ossEdge/explanation` notes stream in;
// closing the panel cancels the request.
import * as vscode from "vscode";
import { ExecuteCommandRequest, LanguageClient } from "vscode-languageclient/node";
import { Explanation, ExplanationNote } from "./explanation";

export const EXPLAIN = "ossEdge.explainSelection";

interface Open {
  explanation: Explanation;
  render: () => void;
}

export class ExplanationPanels {
  private readonly open: Open[] = [];

  constructor(private readonly client: () => LanguageClient | undefined) {}

  /** A streamed note goes to the panel of its request (or the newest one still waiting for its first note). */
  route(note: ExplanationNote): void {
    for (const entry of this.open) {
      const { explanation } = entry;
      if (explanation.id === note.id || (explanation.id === undefined && !explanation.done)) {
        if (explanation.add(note)) {
          entry.render();
          return;
        }
      }
    }
  }

  async explainActiveSelection(): Promise<void> {
    const editor = vscode.window.activeTextEditor;
    if (!editor || editor.selection.isEmpty) {
      void vscode.window.showInformationMessage("oss-edge: select the code to explain first.");
      return;
    }
    const { start, end } = editor.selection;
    await this.explain({
      uri: editor.document.uri.toString(),
      range: { start: { line: start.line, character: start.character }, end: { line: end.line, character: end.character } },
    });
  }

  /** Run the server's explain command with `argument` ({uri, range}), showing it in a new panel. */
  async explain(argument: unknown): Promise<unknown> {
    const client = this.client();
    if (!client) {
      void vscode.window.showErrorMessage("oss-edge: the language server is not running.");
      return undefined;
    }
    const spec = argument as { uri: string; range: { start: { line: number }; end: { line: number } } };
    const name = vscode.Uri.parse(spec.uri).path.split("/").pop();
    const title = `Explain ${name}:${spec.range.start.line + 1}-${spec.range.end.line + 1}`;
    const explanation = new Explanation(title);
    const cancel = new vscode.CancellationTokenSource();
    const entry = { explanation, render: this.panel(title, explanation, cancel) };
    this.open.push(entry);
    entry.render();
    try {
      const markdown = await client.sendRequest(ExecuteCommandRequest.type, { command: EXPLAIN, arguments: [argument] }, cancel.token);
      explanation.add({ id: explanation.id ?? "", channel: "final", delta: "", done: true, markdown: String(markdown ?? "") });
      entry.render();
      return markdown;
    } catch (error) {
      if (!cancel.token.isCancellationRequested) {
        void vscode.window.showErrorMessage(`oss-edge: the explanation failed: ${String(error)}`);
      }
      return undefined;
    }
  }

  /** Open the panel; returns its render function, which redraws at most every 80 ms. */
  private panel(title: string, explanation: Explanation, cancel: vscode.CancellationTokenSource): () => void {
    const panel = vscode.window.createWebviewPanel("ossEdge.explanation", title, {
      viewColumn: vscode.ViewColumn.Beside,
      preserveFocus: true,
    });
    let pending: NodeJS.Timeout | undefined;
    const render = (): void => {
      if (pending) return;
      pending = setTimeout(async () => {
        pending = undefined;
        const html = await vscode.commands.executeCommand<string>("markdown.api.render", explanation.markdown());
        panel.webview.html = page(title, html);
      }, 80);
    };
    panel.onDidDispose(() => {
      cancel.cancel(); // closing the panel stops the generation
      const index = this.open.findIndex((entry) => entry.explanation === explanation);
      if (index >= 0) this.open.splice(index, 1);
    });
    return render;
  }
}

function page(title: string, body: string): string {
  return `<!DOCTYPE html><html><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline';">
<title>${title.replace(/</g, "&lt;")}</title>
<style>body{font-family:var(--vscode-font-family);line-height:1.5;padding:0 1em}
code,pre{font-family:var(--vscode-editor-font-family)}</style></head><body>${body}</body></html>`;
}
