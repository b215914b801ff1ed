"""The recorded Bedrock responses shipped with the package, served to ``replay()`` by name."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["load_recording", "recordings_dir"]

ENV_VAR = "AIOSTREAM_CHAT_RECORDINGS"
_PACKAGED = Path(__file__).resolve().parent / "recordings"


def recordings_dir() -> Path:
    """$AIOSTREAM_CHAT_RECORDINGS if set, else the recordings inside this package."""
    override = os.environ.get(ENV_VAR)
    if override:
        path = Path(override)
        if not path.is_dir():
            raise FileNotFoundError(f"{ENV_VAR}={override!r} is not a directory")
        return path
    return _PACKAGED


def load_recording(name_or_path: str | Path) -> dict[str, Any]:
    """Load a recording by name (e.g. "nova_text") or by path to its JSON file."""
    path = Path(name_or_path)
    if not path.is_file():
        folder = recordings_dir()
        path = folder / (path.name if path.suffix == ".json" else f"{path.name}.json")
        if not path.is_file():
            known = ", ".join(sorted(p.stem for p in folder.glob("*.json")))
            raise FileNotFoundError(f"no recording {name_or_path!r} in {folder} (have: {known})")
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data
