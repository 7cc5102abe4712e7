// How the extension looks for `oss-edge` on this machine: files, PATH, and whether a Python has a module.
import { execFileSync } from "child_process";
import * as fs from "fs";
import { Probe } from "./serverCommand";

export const probe: Probe = {
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
