import * as assert from "assert";
import * as path from "path";
import { findServer, Probe, ServerNotFound } from "../serverCommand";

function probe(files: string[], onPath: Record<string, string> = {}, modules: string[] = [], platform = "linux"): Probe {
  return {
    platform,
    exists: (file) => files.includes(file),
    which: (name) => onPath[name],
    pythonHasModule: (python, module) => modules.includes(`${python}:${module}`),
  };
}

describe("findServer", () => {
  it("uses the setting first", () => {
    const found = findServer("/opt/oss-edge/bin/oss-edge", ["/ws"], probe(["/opt/oss-edge/bin/oss-edge"]));
    assert.deepStrictEqual(found, { command: "/opt/oss-edge/bin/oss-edge", args: ["lsp"], source: "setting" });
  });

  it("says how to fix a setting that points nowhere", () => {
    assert.throws(() => findServer("/nowhere/oss-edge", [], probe([])), (error: Error) => {
      return error instanceof ServerNotFound && /ossEdge\.serverPath/.test(error.message);
    });
  });

  it("prefers the workspace's virtual environment to PATH", () => {
    const venv = path.join("/ws", ".venv", "bin", "oss-edge");
    const found = findServer("", ["/ws"], probe([venv], { "oss-edge": "/usr/bin/oss-edge" }));
    assert.strictEqual(found.command, venv);
    assert.strictEqual(found.source, "venv");
  });

  it("uses the Windows layout of a virtual environment on Windows", () => {
    const venv = path.join("C:/ws", ".venv", "Scripts", "oss-edge.exe");
    assert.strictEqual(findServer("", ["C:/ws"], probe([venv], {}, [], "win32")).command, venv);
  });

  it("falls back to PATH, then to python -m when the package is importable", () => {
    assert.strictEqual(findServer("", ["/ws"], probe([], { "oss-edge": "/usr/bin/oss-edge" })).source, "path");
    const python = findServer("", [], probe([], { python3: "/usr/bin/python3" }, ["/usr/bin/python3:oss_edge"]));
    assert.deepStrictEqual(python.args, ["-m", "oss_edge", "lsp"]);
  });

  it("explains what to install when nothing is found", () => {
    assert.throws(() => findServer("", ["/ws"], probe([], { python3: "/usr/bin/python3" })), /pip install oss-edge/);
  });
});
