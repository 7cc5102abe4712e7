"""`oss-edge doctor`: which model the language server would serve, whether it is a usable folder, and whether a
daemon serves it now. The one answer the Neovim health check shows (and people paste into bug reports)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from edge_runtime import __version__
from edge_runtime.client import connect
from edge_runtime.engine import folder_bytes, open_model_folder
from edge_runtime.errors import DaemonUnavailable, ExitCode, OssEdgeError
from edge_runtime.paths import default_model_folder, default_socket, models_dir


def diagnose(model: Path | None, socket: Path | None) -> dict[str, Any]:
    """The report: `model` is the configured folder (None: the one the language server picks by itself)."""
    chosen = "configured" if model is not None else "the newest export under the models folder"
    path = model.expanduser() if model is not None else default_model_folder()
    report: dict[str, Any] = {
        "version": __version__,
        "models_dir": str(models_dir()),
        "model": {"path": str(path) if path else None, "chosen": chosen if path else None, "problem": None},
        "daemon": {"socket": None, "running": False, "status": None, "problem": None},
    }
    if path is None:
        report["model"]["problem"] = "no model yet: run `oss-edge export`, or configure a model folder"
        return report
    try:
        folder = open_model_folder(path)
    except OssEdgeError as exc:
        report["model"]["problem"] = str(exc)
        return report
    options = folder.manifest.get("options", {})
    report["model"].update(
        name=folder.name,
        quality=options.get("quality"),
        precision=folder.precision,
        provider=folder.provider,
        bytes=folder_bytes(path),
    )
    where = socket or default_socket(path)
    report["daemon"]["socket"] = str(where)
    try:
        report["daemon"]["status"] = asyncio.run(_status(where))
        report["daemon"]["running"] = True
    except DaemonUnavailable:
        pass  # not started yet: the language server starts it with the first request
    except OssEdgeError as exc:
        report["daemon"]["problem"] = str(exc)
    return report


async def _status(socket: Path) -> dict[str, Any]:
    client = await connect(socket, client="oss-edge doctor")
    try:
        status: dict[str, Any] = await client.call("status", timeout=10)
        return status
    finally:
        await client.close()


def exit_code(report: dict[str, Any]) -> ExitCode:
    if report["model"]["path"] is None:
        return ExitCode.NO_MODEL
    if report["model"]["problem"]:
        return ExitCode.BAD_MODEL_FOLDER
    return ExitCode.OK


def render(report: dict[str, Any]) -> str:
    model, daemon = report["model"], report["daemon"]
    lines = [f"oss-edge {report['version']}", f"models folder: {report['models_dir']}"]
    if model["path"] is None:
        lines.append(f"model: {model['problem']}")
        return "\n".join(lines)
    lines.append(f"model: {model['path']} ({model['chosen']})")
    if model["problem"]:
        lines.append(f"  problem: {model['problem']}")
        return "\n".join(lines)
    lines.append(
        f"  {model['name']}: {model.get('quality') or model['precision']}, {model['provider']}, "
        f"{model['bytes'] / 1e9:.2f} GB"
    )
    if daemon["running"]:
        status = daemon["status"]
        lines.append(
            f"daemon: serving on {daemon['socket']} (pid {status.get('pid')}, "
            f"{status['memory']['rss_bytes'] / 1e9:.2f} GB resident, {status['cache']['requests']} requests)"
        )
    elif daemon["problem"]:
        lines.append(f"daemon: {daemon['problem']}")
    else:
        lines.append(f"daemon: not running; the language server starts it on {daemon['socket']} when asked")
    return "\n".join(lines)
