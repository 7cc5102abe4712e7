// The status bar item: what `ossEdge/status` says, asked every two seconds while the server runs.
import * as vscode from "vscode";
import { LanguageClient, State } from "vscode-languageclient/node";
import { ServerStatus, statusView } from "./status";

export class StatusBar implements vscode.Disposable {
  private readonly item = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Right, 100);
  private readonly timer: NodeJS.Timeout;
  /** The server's last answer: the editor takes its settings' effective values (warmOnRestMs) from it. */
  last: ServerStatus | undefined;

  constructor(private readonly client: () => LanguageClient | undefined) {
    this.item.command = "ossEdge.showOutput";
    this.show(undefined);
    this.item.hide();
    this.timer = setInterval(() => void this.refresh(), 2000);
  }

  /** Show the item (as it last was, or starting) and ask the server for its state. */
  async refresh(): Promise<void> {
    this.item.show();
    const client = this.client();
    if (!client || client.state !== State.Running) return;
    try {
      this.show(await client.sendRequest<ServerStatus>("ossEdge/status"));
    } catch {
      // the server is restarting; the next tick will tell
    }
  }

  show(status: ServerStatus | undefined): void {
    this.last = status;
    const view = statusView(status);
    this.item.text = view.text;
    this.item.tooltip = view.tooltip;
    this.item.backgroundColor = view.problem ? new vscode.ThemeColor("statusBarItem.warningBackground") : undefined;
    this.item.show();
  }

  /** The server could not be started at all. */
  failed(message: string): void {
    this.item.text = "$(error) oss-edge";
    this.item.tooltip = message;
    this.item.show();
  }

  dispose(): void {
    clearInterval(this.timer);
    this.item.dispose();
  }
}
