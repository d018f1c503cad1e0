"""Model artifacts on disk: one folder per version, and a pointer to the promoted one.

    $OTTP_DATA_DIR/models/
        20260929T235959Z-3f2a9c/   model.npz (arrays, no pickles) + metadata.json
        promoted.json               {"version": ..., "promoted_at": ..., "gate": {...}}
        promotions.jsonl            every gate decision, promoted or not

A version folder is written under a temporary name and renamed when complete, and
the pointer is replaced atomically, so a crash never leaves a half-written model
promoted.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from ml.models import ModelSpec, TrainedModel

POINTER = "promoted.json"
HISTORY = "promotions.jsonl"


def code_version() -> dict:
    """The package version and, when the code is a git checkout, its commit."""
    import ottp

    out: dict = {"ottp": ottp.__version__, "git_commit": None, "git_dirty": None}
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5
        )
        if commit.returncode == 0:
            out["git_commit"] = commit.stdout.strip()
            status = subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=root,
                capture_output=True,
                text=True,
                timeout=5,
            )
            out["git_dirty"] = bool(status.stdout.strip()) if status.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        pass
    return out


@dataclass
class Artifact:
    version: str
    model: TrainedModel
    user_ids: np.ndarray
    title_ids: np.ndarray
    metadata: dict

    @property
    def weights(self) -> str:
        return self.metadata.get("weights", {}).get("name", "graded")


class Registry:
    def __init__(self, root: Path):
        self.root = Path(root)

    def new_version(self, metadata: dict, now: datetime | None = None) -> str:
        now = now or datetime.now(UTC)
        digest = hashlib.sha256(
            json.dumps(metadata, sort_keys=True, default=str).encode()
        ).hexdigest()[:6]
        return f"{now:%Y%m%dT%H%M%S}Z-{digest}"

    def save(
        self,
        model: TrainedModel,
        user_ids: np.ndarray,
        title_ids: np.ndarray,
        metadata: dict,
        version: str | None = None,
    ) -> str:
        version = version or self.new_version(metadata)
        final = self.root / version
        if final.exists():
            raise FileExistsError(f"model version {version} exists")
        tmp = self.root / f".tmp-{version}"
        tmp.mkdir(parents=True, exist_ok=False)
        try:
            arrays = model.arrays()
            arrays["user_ids"] = np.asarray(user_ids, dtype=str)
            arrays["title_ids"] = np.asarray(title_ids, dtype=str)
            np.savez(tmp / "model.npz", **arrays)
            meta = {
                "version": version,
                "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "model": model.spec.to_dict(),
                "fit_seconds": round(model.fit_seconds, 3),
                "users": int(len(user_ids)),
                "titles": int(len(title_ids)),
                **metadata,
            }
            (tmp / "metadata.json").write_text(json.dumps(meta, indent=2, default=str))
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return version

    def versions(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if p.is_dir() and not p.name.startswith(".") and (p / "metadata.json").exists()
        )

    def metadata(self, version: str) -> dict:
        return json.loads((self.root / version / "metadata.json").read_text())

    def load(self, version: str) -> Artifact:
        meta = self.metadata(version)
        with np.load(self.root / version / "model.npz", allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        user_ids = arrays.pop("user_ids").astype(object)
        title_ids = arrays.pop("title_ids").astype(object)
        model = TrainedModel.from_arrays(ModelSpec.from_dict(meta["model"]), arrays)
        model.fit_seconds = float(meta.get("fit_seconds", 0.0))
        return Artifact(version, model, user_ids, title_ids, meta)

    def promoted(self) -> str | None:
        pointer = self.root / POINTER
        if not pointer.exists():
            return None
        version = json.loads(pointer.read_text()).get("version")
        return version if version and (self.root / version / "metadata.json").exists() else None

    def record(self, version: str, decision: dict) -> None:
        """Append a gate decision to the history; promote the version when it passed."""
        self.root.mkdir(parents=True, exist_ok=True)
        entry = {
            "version": version,
            "decided_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "previous": self.promoted(),
            **decision,
        }
        with (self.root / HISTORY).open("a") as f:
            f.write(json.dumps(entry, default=str) + "\n")
        if decision.get("passed"):
            tmp = self.root / f".{POINTER}.tmp"
            tmp.write_text(json.dumps(entry, indent=2, default=str))
            os.replace(tmp, self.root / POINTER)
