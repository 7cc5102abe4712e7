"""The editor clients stay in step with the server: the VS Code settings mirror the server's options."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from lsp_server.config import CHOICES, CLIENT_SETTINGS, LIMITS, Settings, camel

REPO = Path(__file__).resolve().parent.parent
VSCODE = REPO / "editors" / "vscode" / "package.json"


def test_vscode_settings_mirror_the_server_options_names_defaults_and_limits() -> None:
    properties = json.loads(VSCODE.read_text())["contributes"]["configuration"]["properties"]
    defaults = Settings()
    server_keys = set()
    for spec in dataclasses.fields(Settings):
        key = f"ossEdge.{camel(spec.name)}"
        server_keys.add(key)
        assert key in properties, f"{key} is missing from package.json"
        setting = properties[key]
        assert setting["default"] == getattr(defaults, spec.name), key
        if spec.name in LIMITS:
            assert (setting["minimum"], setting["maximum"]) == LIMITS[spec.name], key
            assert setting["type"] == "integer"
        if spec.name in CHOICES:
            assert tuple(setting["enum"]) == CHOICES[spec.name], key
    # the only settings the extension keeps; the server ignores them without a warning
    assert {key.split(".")[1] for key in set(properties) - server_keys} <= CLIENT_SETTINGS


def test_vscode_extension_uses_a_language_client_with_inline_completion() -> None:
    package = json.loads(VSCODE.read_text())
    major = int(package["dependencies"]["vscode-languageclient"].lstrip("^~").split(".")[0])
    assert major >= 10  # inline completion is built into vscode-languageclient from 10.0
    assert package["engines"]["vscode"] == "^1.91.0"  # what vscode-languageclient 10 requires
