"""The sf-render-batch jobs file: a JSON list (or {"jobs": [...]}) of sf-render settings, checked up front.

Each job: {"name": "lego-test", "scene": "runs/lego/scene.ply", "output": "renders/lego",
           and either "camera_path": "path.json" or "data": "datasets/lego" (with "mode": "test" | "orbit")}
plus any other sf-render setting (downscale, background, num_frames, fps, backend, meshes, mesh_layout).
Relative paths are taken from the jobs file's folder. Every problem is reported at once, naming job and field.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Union

from .render_cli import RenderConfig

PATH_FIELDS = ("scene", "data", "output", "camera_path", "mesh_layout")
MODES = ("test", "orbit", "camera-path")


@dataclass
class BatchJob:
    name: str
    config: RenderConfig


class JobsFileError(ValueError):
    """The jobs file is malformed; the message lists every problem with its job and field."""


def _job(entry: Any, index: int, base: Path, problems: List[str]) -> Union[BatchJob, None]:
    where = f"job {index}"
    if not isinstance(entry, dict):
        problems.append(f"{where}: expected an object with scene/output/..., got {type(entry).__name__}")
        return None
    name = entry.get("name", f"job{index}")
    if not isinstance(name, str) or not name:
        problems.append(f"{where}: field 'name' must be a non-empty string, got {name!r}")
        return None
    where = f"job {index} ({name!r})"
    known = {f.name for f in dataclasses.fields(RenderConfig)} | {"name"}
    for key in entry:
        if key not in known:
            problems.append(f"{where}: unknown field {key!r} (known: {', '.join(sorted(known))})")
    for key in ("scene", "output"):
        if key not in entry:
            problems.append(f"{where}: missing required field {key!r}")
    values: Dict[str, Any] = {}
    for key, value in entry.items():
        if key == "name" or key not in known:
            continue
        if key in PATH_FIELDS:
            if not isinstance(value, str) or not value:
                problems.append(f"{where}: field {key!r} must be a path string, got {value!r}")
                continue
            value = Path(value) if Path(value).is_absolute() else base / value
        elif key == "meshes":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                problems.append(f"{where}: field 'meshes' must be a list of paths, got {value!r}")
                continue
            value = tuple(Path(v) if Path(v).is_absolute() else base / v for v in value)
        elif key == "background":
            if not (isinstance(value, list) and len(value) == 3 and all(isinstance(v, (int, float)) for v in value)):
                problems.append(f"{where}: field 'background' must be [r, g, b] in 0..1, got {value!r}")
                continue
            value = tuple(float(v) for v in value)
        elif key in ("num_frames", "fps", "downscale"):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                problems.append(f"{where}: field {key!r} must be a positive integer, got {value!r}")
                continue
        elif key == "mode" and value not in MODES:
            problems.append(f"{where}: field 'mode' must be one of {', '.join(MODES)}, got {value!r}")
            continue
        elif key == "backend" and not isinstance(value, str):
            problems.append(f"{where}: field 'backend' must be a string, got {value!r}")
            continue
        values[key] = value
    if "scene" not in values or "output" not in values:
        return None
    if "mode" not in values:
        values["mode"] = "camera-path" if "camera_path" in values else "test"
    mode = values["mode"]
    if mode == "camera-path" and "camera_path" not in values:
        problems.append(f"{where}: mode camera-path needs field 'camera_path'")
    if mode != "camera-path" and "data" not in values:
        problems.append(f"{where}: mode {mode} needs field 'data' (a dataset folder)")
    for key in ("scene", "camera_path", "data", "mesh_layout"):
        path = values.get(key)
        if path is not None and not path.exists():
            problems.append(f"{where}: field {key!r}: {path} does not exist")
    for path in values.get("meshes", ()):
        if not path.exists():
            problems.append(f"{where}: field 'meshes': {path} does not exist")
    try:
        return BatchJob(name, RenderConfig(**values))
    except ValueError as exc:  # RenderConfig's own range checks
        problems.append(f"{where}: {exc}")
        return None


def load_jobs(path: Union[str, Path]) -> List[BatchJob]:
    """Parse and check the jobs file; raises JobsFileError listing every problem, or FileNotFoundError."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"jobs file not found: {path}")
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise JobsFileError(f"{path}: not valid JSON ({exc})") from exc
    entries = doc.get("jobs") if isinstance(doc, dict) else doc
    if not isinstance(entries, list) or not entries:
        raise JobsFileError(f"{path}: expected a non-empty list of jobs (or {{\"jobs\": [...]}})")
    problems: List[str] = []
    jobs = [_job(entry, i, path.parent, problems) for i, entry in enumerate(entries)]
    names = [j.name for j in jobs if j is not None]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"job name {name!r} is used more than once")
    outputs = [str(j.config.output.resolve()) for j in jobs if j is not None]
    for out in sorted({o for o in outputs if outputs.count(o) > 1}):
        problems.append(f"output folder {out} is shared by more than one job")
    if problems:
        raise JobsFileError(f"{path}: " + "; ".join(problems))
    return [j for j in jobs if j is not None]
