"""`oss-edge bench report`: one report from the parts each benchmark wrote into the report folder."""

from __future__ import annotations

import json
from pathlib import Path

from export.errors import OptionError
from oss_edge.bench import export, lsp, quality, runtime

WRITERS = {"export": export.markdown, "quality": quality.markdown, "runtime": runtime.markdown, "lsp": lsp.markdown}


def assemble_report(folder: Path) -> str:
    """report.json (every part's figures and the machine) and report.md (every part's table) from the parts there."""
    parts = {}
    for name in WRITERS:
        path = folder / f"{name}.json"
        if path.exists():
            parts[name] = json.loads(path.read_text())
    if not parts:
        raise OptionError(f"{folder} holds no benchmark results (export.json, quality.json, runtime.json, lsp.json)")
    machine = next(iter(parts.values()))["machine"]
    (folder / "report.json").write_text(json.dumps({"machine": machine, **parts}, indent=2) + "\n")
    sections = ["# oss-edge benchmark report", ""]
    for name, report in parts.items():
        lines = WRITERS[name](report).splitlines()
        sections += [f"## {lines[0]}", *lines[1:], ""]
    text = "\n".join(sections)
    (folder / "report.md").write_text(text)
    return text
