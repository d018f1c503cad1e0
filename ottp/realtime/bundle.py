"""The serving bundle: what the real-time server knows from the batch marts, published atomically.

After each build, :func:`publish_bundle` reads the marts the live profile needs from
the warehouse (one read-only connection) and writes them as Parquet files, with a
``manifest.json`` (version, creation time, the marts' as_of, row counts, checksums
and the dbt rule values), into ``<bundle_dir>/bundles/<version>/``. The folder is
written under a temporary name and renamed into ``bundles/``; then the ``CURRENT``
pointer file is replaced (written, fsynced, renamed). A reader follows the pointer
and sees the previous complete bundle or the new complete one, never a mix. The
last :data:`KEEP_VERSIONS` versions stay on disk; older ones are deleted.

The bundle also carries the serving model of the live recommendations
(``ottp.realtime.rerank``): written by ``write_serving_model`` from the same
connection and the model registry's promoted version into ``model/``, its files
listed in the manifest with their sizes and SHA-256. A warehouse without the ML
tables, or a registry without a promoted model, gives a bundle without a model,
and the manifest says why (``model.reason``).

The server reads it through :class:`BundleWatcher`: a thread polls the pointer,
loads a new version fully into memory (:func:`load_bundle`, checksums verified;
the serving model loaded and its recommender warmed up by one request) and only
then swaps its reference. A request holds the :class:`Bundle` object it started
with, so a swap never drops or fails one.
"""

from __future__ import annotations

import gc
import hashlib
import io
import json
import logging
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from ml.registry import Registry
from ottp import config
from ottp.realtime import rerank
from ottp.warehouse import LOCK_WAIT_S, connect

logger = logging.getLogger(__name__)

BUNDLES = "bundles"
POINTER = "CURRENT"
MANIFEST = "manifest.json"
# Versions kept on disk: the current one and a few before it (a server still loading
# one that has just been superseded finds its files).
KEEP_VERSIONS = 3
# A temporary folder left by a publisher that crashed is removed after this long.
STALE_TEMP_S = 3600.0
_TEMP_PREFIX = ".tmp-"
_VERSION = re.compile(r"^\d{8}T\d{6}\d{6}Z-[0-9a-f]{6}$")

# File -> the query that fills it. Sorted by user where a table is per user, so each
# user's rows are one contiguous slice once loaded.
TABLES: dict[str, str] = {
    "thresholds": (
        "select segment, cast(min_titles_watched as integer) as min_titles_watched "
        "from reference.segment_thresholds order by min_titles_watched"
    ),
    "titles": (
        "select title_id, category, title_kind, series_id, next_episode_title_id, "
        "duration_s, is_episode, is_available from marts.titles order by title_id"
    ),
    "lifecycle": (
        "select user_id, lifecycle_stage, subscription_status, highest_segment, "
        "is_cancelled, is_deleted, last_play_at, as_of_at "
        "from marts.user_lifecycle order by user_id"
    ),
    "segments": (
        "select user_id, category, segment, cast(titles_watched as bigint) as titles_watched, "
        "is_fan from marts.user_category_segments order by user_id, category"
    ),
    # What a live play must not count again: the distinct titles each user validly
    # played per category, as user_category_affinity counts them.
    "watched": (
        "select distinct user_id, category, title_id from marts.plays "
        "where is_valid_play and user_id is not null and category is not null "
        "order by user_id, category, title_id"
    ),
    "continue_watching": (
        "select user_id, title_id, resume_position_s, resume_pct, remaining_s, "
        "continue_rank, last_watched_at from marts.continue_watching "
        "order by user_id, continue_rank"
    ),
    # The trigger ledger: for the live scenarios, which triggers have fired already.
    "triggers": (
        "select trigger_id, user_id, scenario, subject_id from exports.crm_trigger_log "
        "order by user_id, trigger_id"
    ),
    # The live scenarios' subject names (crm_trigger_log.segment_triggers joins the seed).
    "categories": "select category, display_name from reference.categories order by category",
    # Who a live trigger may concern, as crm_trigger_log decides it: eligible (in users,
    # not deleted, not a deleted user's pseudonym) and, if not a contact, suppressed.
    "audience": (
        "select users.user_id, "
        "(not users.is_deleted and deleted.pseudonym is null) as is_eligible, "
        "(contacts.user_id is not null) as is_contact "
        "from marts.users as users "
        "left join raw.deleted_users as deleted on users.user_id = deleted.pseudonym "
        "left join exports.crm_contacts as contacts on users.user_id = contacts.user_id "
        "order by users.user_id"
    ),
}
# Files written only when the relations they read exist (a warehouse without the
# exports or the privacy pass, as in a marts-only build): a bundle without them
# fires no live trigger (ottp.realtime.triggers).
OPTIONAL_SOURCES: dict[str, tuple[str, ...]] = {
    "categories": ("reference.categories",),
    "audience": ("marts.users", "raw.deleted_users", "exports.crm_contacts"),
}
# Tables indexed by user in memory.
USER_TABLES = ("lifecycle", "segments", "watched", "continue_watching", "triggers", "audience")
# The serving model's folder in a bundle, and the relations write_serving_model reads.
MODEL_DIR = "model"
MODEL_SOURCES = (
    "marts.titles",
    "marts.plays",
    "marts.title_transitions",
    "ml.training_interactions",
    "ml.recommendations",
)


def dbt_vars(project_dir: Path | None = None) -> dict[str, Any]:
    """The rule values of the dbt project (its ``vars:``), as the marts were built with."""
    path = Path(project_dir or config.DBT_PROJECT_DIR) / "dbt_project.yml"
    return dict(yaml.safe_load(path.read_text())["vars"])


@dataclass(frozen=True)
class BundleInfo:
    """What one publication wrote."""

    version: str
    path: Path
    created_at: str
    as_of: str | None
    rows: dict[str, int]
    bytes: int
    seconds: float
    # the serving model's version, or None and why there is none
    model_version: str | None = None
    model_reason: str | None = None

    def markdown(self) -> str:
        lines = ["| file | rows |", "|---|---:|"]
        lines += [f"| {name}.parquet | {n:,} |" for name, n in self.rows.items()]
        return "\n".join(lines)


def _new_version(now: datetime) -> str:
    # Sorts by time as text; the suffix keeps two publications in one microsecond apart.
    return now.strftime("%Y%m%dT%H%M%S%fZ") + "-" + uuid.uuid4().hex[:6]


def _literal(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_files(
    warehouse_path: Path, folder: Path, wait_s: float, models_dir: Path
) -> tuple[dict, str | None, dict]:
    """Every table of TABLES as Parquet in ``folder``, and the serving model in its
    ``model/``; (file entries, the marts' as_of, the model's manifest entry)."""
    files: dict[str, dict[str, Any]] = {}
    con = connect(warehouse_path, read_only=True, wait_s=wait_s)
    try:
        as_of = con.execute("select max(as_of_at) from marts.user_lifecycle").fetchone()[0]
        present = {
            f"{schema}.{table}"
            for schema, table in con.execute(
                "select table_schema, table_name from information_schema.tables"
            ).fetchall()
        }
        for name, query in TABLES.items():
            if not set(OPTIONAL_SOURCES.get(name, ())) <= present:
                continue
            target = folder / f"{name}.parquet"
            # The path is ours (a folder we created); the query is a constant above.
            con.execute(f"copy ({query}) to {_literal(target)} (format parquet)")
            rows = con.execute(f"select count(*) from read_parquet({_literal(target)})")
            files[name] = _file_entry(target, int(rows.fetchall()[0][0]))
        model = _write_model(con, present, models_dir, folder / MODEL_DIR)
    finally:
        con.close()
    return files, (as_of.isoformat() if as_of is not None else None), model


def _file_entry(path: Path, rows: int | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"file": path.name, "bytes": path.stat().st_size}
    entry["sha256"] = _sha256(path)
    if rows is not None:
        entry["rows"] = rows
    return entry


def _write_model(con, present: set[str], models_dir: Path, folder: Path) -> dict[str, Any]:
    """The serving model from the promoted model and the warehouse; its manifest entry:
    version, folder, files (bytes, SHA-256) and row counts, or the reason there is none."""
    missing = [name for name in MODEL_SOURCES if name not in present]
    if missing:
        return {"version": None, "reason": f"the warehouse has no {', '.join(missing)}"}
    registry = Registry(models_dir)
    if registry.promoted() is None:
        return {"version": None, "reason": f"no promoted model in {models_dir}"}
    written = rerank.write_serving_model(con, registry, folder)
    return {
        "version": written["version"],
        "folder": MODEL_DIR,
        "files": {name: _file_entry(folder / name) for name in written["files"]},
        "rows": written.get("rows", {}),
    }


def publish_bundle(
    warehouse_path: Path | None = None,
    bundle_dir: Path | None = None,
    wait_s: float = LOCK_WAIT_S,
    models_dir: Path | None = None,
) -> BundleInfo:
    """Write a new bundle version from the warehouse's marts and the promoted model of
    ``models_dir`` (default ``$OTTP_DATA_DIR/models``) and point ``CURRENT`` at it."""
    started = time.monotonic()
    warehouse_path = Path(warehouse_path or config.settings().warehouse_path)
    bundle_dir = Path(bundle_dir or config.realtime_settings().bundle_dir)
    models_dir = Path(models_dir or config.settings().data_dir / "models")
    root = bundle_dir / BUNDLES
    root.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    version = _new_version(now)
    temp = root / f"{_TEMP_PREFIX}{version}"
    temp.mkdir()
    try:
        files, as_of, model = _write_files(warehouse_path, temp, wait_s, models_dir)
        manifest = {
            "version": version,
            "created_at": now.isoformat(),
            "as_of": as_of,
            "warehouse": str(warehouse_path),
            "rules": dbt_vars(),
            "files": files,
            "model": model,
        }
        (temp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
        for f in (*temp.iterdir(), *(temp / MODEL_DIR).glob("*")):
            if f.is_file():
                with open(f, "rb") as handle:
                    os.fsync(handle.fileno())
        if (temp / MODEL_DIR).is_dir():
            _fsync_dir(temp / MODEL_DIR)
        _fsync_dir(temp)
        final = root / version
        os.rename(temp, final)
        _fsync_dir(root)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    _point_to(bundle_dir, version)
    prune(bundle_dir)
    return BundleInfo(
        version=version,
        path=final,
        created_at=manifest["created_at"],
        as_of=as_of,
        rows={name: f["rows"] for name, f in files.items()},
        bytes=sum(f["bytes"] for f in (*files.values(), *model.get("files", {}).values())),
        seconds=round(time.monotonic() - started, 3),
        model_version=model["version"],
        model_reason=model.get("reason"),
    )


def _point_to(bundle_dir: Path, version: str) -> None:
    """Replace the pointer file atomically: a reader sees the old version or the new one."""
    temp = bundle_dir / f".{POINTER}.{uuid.uuid4().hex}.tmp"
    with open(temp, "w") as f:
        f.write(version + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, bundle_dir / POINTER)
    _fsync_dir(bundle_dir)


def current_version(bundle_dir: Path) -> str | None:
    """The version ``CURRENT`` points at; None before the first publication."""
    try:
        version = (Path(bundle_dir) / POINTER).read_text().strip()
    except FileNotFoundError:
        return None
    if not _VERSION.match(version):
        raise ValueError(f"{bundle_dir / POINTER} does not name a bundle version")
    return version


def versions(bundle_dir: Path) -> list[str]:
    """The published versions on disk, oldest first."""
    root = Path(bundle_dir) / BUNDLES
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and _VERSION.match(p.name))


def prune(bundle_dir: Path, keep: int = KEEP_VERSIONS) -> list[str]:
    """Delete all but the newest ``keep`` versions (never the current one); stale temp folders."""
    current = current_version(bundle_dir)
    on_disk = versions(bundle_dir)
    removed = [v for v in on_disk[: max(len(on_disk) - keep, 0)] if v != current]
    root = Path(bundle_dir) / BUNDLES
    for v in removed:
        shutil.rmtree(root / v, ignore_errors=True)
    for temp in root.glob(f"{_TEMP_PREFIX}*"):
        if time.time() - temp.stat().st_mtime > STALE_TEMP_S:
            shutil.rmtree(temp, ignore_errors=True)
    return removed


class UserRows:
    """A table's rows grouped by user: each user's rows are one slice of the Arrow table."""

    def __init__(self, table: pa.Table, key: str = "user_id") -> None:
        starts, ends, users = _runs(table.column(key))
        if len(set(users)) != len(users):
            # not grouped (the file's row order is not guaranteed): sort, then group
            table = table.sort_by(key)
            starts, ends, users = _runs(table.column(key))
        self.table = table.drop_columns([key])
        self._spans: dict[str, tuple[int, int]] = dict(
            zip(users, zip(starts.tolist(), ends.tolist(), strict=True), strict=True)
        )

    def __contains__(self, user_id: object) -> bool:
        return user_id in self._spans

    def __len__(self) -> int:
        return len(self._spans)

    def rows(self, user_id: str) -> list[dict[str, Any]]:
        span = self._spans.get(user_id)
        if span is None:
            return []
        start, end = span
        return self.table.slice(start, end - start).to_pylist()

    def users(self) -> Iterator[str]:
        return iter(self._spans)


def _runs(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, list]:
    """Start, end and key of each run of equal keys (compared in Arrow, not in Python)."""
    keys = column.combine_chunks()
    n = len(keys)
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), []
    differs = pc.fill_null(pc.not_equal(keys.slice(1), keys.slice(0, n - 1)), True)
    breaks = np.flatnonzero(differs.to_numpy(zero_copy_only=False)) + 1
    starts = np.concatenate(([0], breaks)).astype(np.int64)
    ends = np.concatenate((breaks, [n])).astype(np.int64)
    return starts, ends, keys.take(pa.array(starts)).to_pylist()


@dataclass(frozen=True)
class Bundle:
    """One bundle version in memory. Read-only: the watcher swaps whole objects."""

    version: str
    created_at: str
    as_of: datetime | None
    rules: dict[str, Any]
    # segment -> min_titles_watched, lowest threshold first
    thresholds: dict[str, int]
    # title_id -> {category, title_kind, series_id, next_episode_title_id, duration_s, ...}
    titles: dict[str, dict[str, Any]]
    lifecycle: UserRows
    segments: UserRows
    watched: UserRows
    continue_watching: UserRows
    triggers: UserRows
    trigger_ids: frozenset[str] = field(default_factory=frozenset)
    # user_id -> {is_eligible, is_contact}; None in a bundle published before it existed
    audience: UserRows | None = None
    # category -> display name
    categories: dict[str, str] = field(default_factory=dict)
    # the live recommendations' serving model and its recommender; None, and why, when
    # the bundle has none (no ML tables, no promoted model, an older bundle)
    model: rerank.ServingModel | None = None
    recommender: rerank.LiveRecommender | None = None
    model_reason: str | None = None

    @property
    def model_version(self) -> str | None:
        return self.model.version if self.model is not None else None

    def lifecycle_of(self, user_id: str) -> dict[str, Any] | None:
        rows = self.lifecycle.rows(user_id)
        return rows[0] if rows else None

    def watched_titles(self, user_id: str) -> dict[str, set[str]]:
        """category -> the distinct titles the user validly played, as of the build."""
        out: dict[str, set[str]] = {}
        for row in self.watched.rows(user_id):
            out.setdefault(row["category"], set()).add(row["title_id"])
        return out

    def category_of(self, title_id: str) -> str | None:
        title = self.titles.get(title_id)
        return title["category"] if title else None

    def audience_of(self, user_id: str) -> dict[str, Any] | None:
        """{is_eligible, is_contact} as the trigger ledger decides them; None: not in users."""
        if self.audience is None:
            return None
        rows = self.audience.rows(user_id)
        return rows[0] if rows else None


def _verified(path: Path, entry: dict[str, Any]) -> bytes:
    data = path.read_bytes()
    if len(data) != entry["bytes"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise ValueError(f"{path}: size or checksum differs from the manifest")
    return data


def _read(folder: Path, entry: dict[str, Any]) -> pa.Table:
    data = _verified(folder / entry["file"], entry)
    table = pq.read_table(io.BytesIO(data))
    if table.num_rows != entry["rows"]:
        raise ValueError(f"{folder / entry['file']}: row count differs from the manifest")
    return table


def _load_version(folder: Path) -> Bundle:
    manifest = json.loads((folder / MANIFEST).read_text())
    if manifest.get("version") != folder.name:
        raise ValueError(f"{folder / MANIFEST} names another version")
    tables = {name: _read(folder, entry) for name, entry in manifest["files"].items()}
    thresholds = tables["thresholds"]
    titles = tables["titles"]
    title_ids = titles.column("title_id").to_pylist()
    as_of = manifest["as_of"]
    categories = tables.get("categories")
    model, recommender, model_reason = _load_model(folder, manifest.get("model"))
    return Bundle(
        version=manifest["version"],
        created_at=manifest["created_at"],
        as_of=datetime.fromisoformat(as_of) if as_of else None,
        rules=manifest["rules"],
        thresholds=dict(
            zip(
                thresholds.column("segment").to_pylist(),
                thresholds.column("min_titles_watched").to_pylist(),
                strict=True,
            )
        ),
        titles=dict(zip(title_ids, titles.drop_columns(["title_id"]).to_pylist(), strict=True)),
        # an older version without a file gets the field's default
        **{
            name: UserRows(tables[name])
            for name in USER_TABLES
            if name in tables or name != "audience"
        },
        trigger_ids=frozenset(tables["triggers"].column("trigger_id").to_pylist()),
        categories=dict(
            zip(
                categories.column("category").to_pylist(),
                categories.column("display_name").to_pylist(),
                strict=True,
            )
        )
        if categories is not None
        else {},
        model=model,
        recommender=recommender,
        model_reason=model_reason,
    )


def _load_model(
    folder: Path, entry: dict[str, Any] | None
) -> tuple[rerank.ServingModel | None, rerank.LiveRecommender | None, str | None]:
    """The bundle's serving model (files checked against the manifest) and a recommender
    on it, warmed up by one request so the first viewer does not pay its set-up."""
    if entry is None:
        return None, None, "the bundle was published before bundles carried a serving model"
    if entry.get("version") is None:
        return None, None, entry.get("reason") or "the bundle has no serving model"
    model_folder = folder / entry["folder"]
    for name, file_entry in entry["files"].items():
        _verified(model_folder / name, file_entry)
    model = rerank.load_serving_model(model_folder)
    if model.version != entry["version"]:
        raise ValueError(f"{model_folder}: the serving model is not the manifest's version")
    recommender = rerank.LiveRecommender(model)
    first_user = str(model.user_ids[0]) if len(model.user_ids) else None
    for user_id in (None, first_user):
        recommender.recommend(rerank.SessionSignals(user_id=user_id), 10)
    return model, recommender, None


def load_bundle(bundle_dir: Path, attempts: int = 3) -> Bundle | None:
    """The current bundle, loaded whole into memory; None when none was published yet."""
    for attempt in range(attempts):
        version = current_version(bundle_dir)
        if version is None:
            return None
        try:
            return _load_version(Path(bundle_dir) / BUNDLES / version)
        except FileNotFoundError:
            # pruned between reading the pointer and the files: a newer one is current
            if attempt == attempts - 1:
                raise
    return None


class BundleWatcher:
    """Keeps the newest published bundle in memory; a thread swaps it when a new one appears."""

    def __init__(self, rt: config.RealtimeSettings) -> None:
        self.bundle_dir = Path(rt.bundle_dir)
        self.poll_seconds = float(rt.bundle_poll_seconds)
        self._current: Bundle | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.swaps = 0

    @property
    def current(self) -> Bundle | None:
        # One attribute read: a caller keeps the object it got for its whole request.
        return self._current

    @property
    def version(self) -> str | None:
        bundle = self._current
        return bundle.version if bundle else None

    def refresh(self) -> bool:
        """Load the pointed-at version if it is not the one held; True when it swapped."""
        try:
            version = current_version(self.bundle_dir)
            if version is None or version == self.version:
                return False
            bundle = load_bundle(self.bundle_dir)
        except (OSError, ValueError, KeyError, pa.ArrowException) as e:
            # keep serving the bundle held; the next poll tries again
            logger.warning("serving bundle not loaded (%s); keeping %s", e, self.version)
            return False
        if bundle is None or bundle.version == self.version:
            return False
        # The bundle's objects live until the next swap: out of the cyclic collector's
        # generations, so no full collection walks them in the middle of a request
        # (they are freed by reference counting when the next swap drops them).
        gc.freeze()
        self._current = bundle
        self.swaps += 1
        logger.info("serving bundle %s loaded", bundle.version)
        return True

    def start(self) -> BundleWatcher:
        """Load the current bundle now, then poll for newer ones in a daemon thread."""
        self.refresh()
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="bundle-watcher", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            self.refresh()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(self.poll_seconds, 1.0) + 5.0)
            self._thread = None
