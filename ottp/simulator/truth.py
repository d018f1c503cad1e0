"""The planted truth (private): what the simulator made, written next to the landing files
for tests that compare the marts with it. The loader never reads it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ottp.simulator.arrays import fixed_width_strings, id_strings, uuid_strings
from ottp.simulator.behaviour import Behaviour
from ottp.simulator.catalog import Catalog
from ottp.simulator.lines import id_keys, id_widths

TRUTH_DIR = "_truth"  # next to events/ and catalog/: what the simulator planted


def _id_array(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    if len(numbers) == 0:
        return pa.array([], type=pa.string())
    return fixed_width_strings(id_strings(prefix, numbers, width)).cast(pa.string())


def write_truth(
    behaviour: Behaviour, catalog: Catalog, out_dir: Path, seed: int, n_users: int
) -> Path:
    """The planted truth as Parquet files in ``out_dir/_truth`` (the loader never reads it).

    - ``devices.parquet``: every device the simulator made: device_id, user_id (null for
      anonymous devices), is_bot, bot_kind ('non_stop_player', 'scraper' or null).
    - ``favourite_categories.parquet``: each simulated person's three preferred categories:
      user_id, category, rank (1 = favourite), preference (the share of the person's
      choices of what to watch that goes to the category, before availability).
    - ``playbacks.parquet``: every playback started in the window: playback_id, user_id,
      title_id, device_id, true_played_s (seconds of content played before the end of the
      window, as simulated: before the collector drops, corrupts or delays lines), is_bot.
    """
    import pyarrow.parquet as pq

    folder = out_dir / TRUTH_DIR
    folder.mkdir(parents=True, exist_ok=True)
    uw, dw = id_widths(behaviour, n_users)
    dv = behaviour.devices
    nd = len(dv.user)

    def user_ids(u: np.ndarray) -> pa.Array:
        ids = _id_array("u_", np.maximum(u, 0) + 1, uw)
        return pc.if_else(pa.array(u < 0), pa.scalar(None, pa.string()), ids)

    kind = np.where(dv.user >= 0, "non_stop_player", "scraper")
    devices = pa.table(
        {
            "device_id": _id_array("d_", np.arange(1, nd + 1), dw),
            "user_id": user_ids(dv.user),
            "is_bot": pa.array(dv.bot, type=pa.bool_()),
            "bot_kind": pa.array(np.where(dv.bot, kind, None).tolist(), type=pa.string()),
        }
    )
    tr = behaviour.truth
    pref = tr["pref"]
    top = min(3, pref.shape[1])
    # rank categories by preference, ties by category order (stable)
    order = np.argsort(-pref, axis=1, kind="stable")[:, :top]
    fav_user = np.repeat(np.arange(pref.shape[0]), top)
    fav_cat = order.ravel()
    favourites = pa.table(
        {
            "user_id": user_ids(fav_user),
            "category": pa.array(catalog.categories).take(pa.array(fav_cat)),
            "rank": pa.array(np.tile(np.arange(1, top + 1), pref.shape[0]), type=pa.int32()),
            "preference": pa.array(pref[fav_user, fav_cat], type=pa.float64()),
        }
    )
    keys = id_keys(seed)
    play = tr["play"]
    playbacks = pa.table(
        {
            "playback_id": uuid_strings(keys[2], keys[3], play).cast(pa.string()),
            "user_id": user_ids(tr["play_user"]),
            "title_id": _id_array("t_", tr["play_title"] + 1, catalog.id_width),
            "device_id": _id_array("d_", tr["play_dev"] + 1, dw),
            "true_played_s": pa.array(tr["play_true_s"], type=pa.float64()),
            "is_bot": pa.array(tr["play_bot"], type=pa.bool_()),
        }
    )
    for name, table in (
        ("devices", devices),
        ("favourite_categories", favourites),
        ("playbacks", playbacks),
    ):
        pq.write_table(table, folder / f"{name}.parquet", compression="zstd")
    return folder
