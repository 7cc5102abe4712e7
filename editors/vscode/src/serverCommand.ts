// Where the `oss-edge` command is: a setting, else the workspace's virtual environment, else PATH, else
// `python3 -m oss_edge`. Pure logic over an injected probe, so that it can be tested without VS Code.
import * as path from "path";

export interface Probe {
  platform: string;
  exists(file: string): boolean;
  which(name: string): string | undefined;
  pythonHasModule(python: string, module: string): boolean;
}

export interface ServerCommand {
  command: string;
  args: string[];
  source: "setting" | "venv" | "path" | "python";
}

export class ServerNotFound extends Error {}

function venvCommands(folder: string, platform: string): string[] {
  const names = [".venv", "venv", "env"];
  return platform === "win32"
    ? names.map((venv) => path.join(folder, venv, "Scripts", "oss-edge.exe"))
    : names.map((venv) => path.join(folder, venv, "bin", "oss-edge"));
}

export function findServer(setting: string, workspaceFolders: string[], probe: Probe): ServerCommand {
  const configured = setting.trim();
  if (configured) {
    if (path.isAbsolute(configured) && !probe.exists(configured)) {
      throw new ServerNotFound(
        `ossEdge.serverPath is ${configured}, which does not exist. Fix the setting, or clear it to let oss-edge search.`,
      );
    }
    return { command: configured, args: ["lsp"], source: "setting" };
  }
  for (const folder of workspaceFolders) {
    for (const candidate of venvCommands(folder, probe.platform)) {
      if (probe.exists(candidate)) {
        return { command: candidate, args: ["lsp"], source: "venv" };
      }
    }
  }
  const onPath = probe.which(probe.platform === "win32" ? "oss-edge.exe" : "oss-edge");
  if (onPath) {
    return { command: onPath, args: ["lsp"], source: "path" };
  }
  for (const python of probe.platform === "win32" ? ["py", "python"] : ["python3", "python"]) {
    const found = probe.which(python);
    if (found && probe.pythonHasModule(found, "oss_edge")) {
      return { command: found, args: ["-m", "oss_edge", "lsp"], source: "python" };
    }
  }
  throw new ServerNotFound(
    "oss-edge is not installed where VS Code can find it. Install it (pip install oss-edge, or `make setup` in a " +
      "clone) into the workspace's .venv or onto PATH, or set ossEdge.serverPath to the oss-edge command.",
  );
}
