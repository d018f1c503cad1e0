"""Simulated people and their devices (private): where they live, how often they watch,
what they like, their plan, and when they sign up, cancel, come back or leave.

Platforms come from the contract (``ottp/contract/rules.py``), cancel reasons from
``seeds/cancel_reasons.csv``; the shares below are the simulator's own behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ottp.contract import rules as contract_rules
from ottp.simulator.arrays import NEVER, sigmoid, weighted_choice
from ottp.simulator.catalog import Catalog
from ottp.simulator.genres import N_CLUSTERS, category_weights

PLATFORMS = contract_rules.PLATFORMS
PLATFORM_WEIGHTS = (0.2, 0.2, 0.25, 0.35)
ANONYMOUS_PLATFORM_WEIGHTS = (0.45, 0.2, 0.3, 0.05)
APP_VERSIONS = {
    "web": ("2026.07.2", "2026.06.4", "2026.05.1"),
    "ios": ("5.12.0", "5.11.2", "5.10.1"),
    "android": ("5.12.1", "5.11.0", "5.9.3"),
    "tv": ("3.4.0", "3.3.2", "3.1.0"),
}
APP_VERSION_WEIGHTS = (0.6, 0.3, 0.1)
# country, UTC offset (hours), share of users
COUNTRIES = (
    ("US", -5.0, 0.34),
    ("GB", 0.0, 0.10),
    ("DE", 1.0, 0.08),
    ("FR", 1.0, 0.06),
    ("BR", -3.0, 0.10),
    ("MX", -6.0, 0.06),
    ("CA", -5.0, 0.05),
    ("ES", 1.0, 0.05),
    ("IN", 5.5, 0.08),
    ("NL", 1.0, 0.03),
    ("SE", 1.0, 0.03),
    ("AU", 10.0, 0.02),
)
PLANS = ("basic", "standard", "premium")
PLAN_WEIGHTS = (0.3, 0.45, 0.25)

# cancel reason weights for (disengaged, engaged) users; codes not listed get the default
REASON_WEIGHTS = {
    "too_expensive": (0.25, 0.20),
    "not_enough_content": (0.30, 0.05),
    "finished_show": (0.05, 0.30),
    "technical_issues": (0.10, 0.05),
    "switching_service": (0.10, 0.15),
    "temporary_break": (0.10, 0.20),
    "other": (0.10, 0.10),
}
REASON_DEFAULT = (0.05, 0.05)
REACTIVATE_P = {"temporary_break": 0.5}
REACTIVATE_DEFAULT = 0.15

# activity: sessions per day ~ lognormal(log(median), sigma)
ACTIVITY_MEDIAN = 0.045
ACTIVITY_SIGMA = 1.5
ACTIVITY_MAX = 4.0


@dataclass
class Users:
    n: int
    country: np.ndarray
    offset_ms: np.ndarray
    signup_day: np.ndarray  # -1: existed before the window
    lam: np.ndarray  # sessions per day
    s_aff: np.ndarray  # share of sessions spent on series
    bias: np.ndarray  # completion propensity
    engagement: np.ndarray
    pref: np.ndarray  # (n, C) category preference
    clpref: np.ndarray  # (n, C, K) sub-genre preference
    plan: np.ndarray
    dev_start: np.ndarray
    n_dev: np.ndarray
    dev_cum: np.ndarray  # (n, 3) cumulative device usage weights
    cancel_day: np.ndarray
    reason: np.ndarray
    react_day: np.ndarray
    delete_day: np.ndarray


@dataclass
class Devices:
    user: np.ndarray  # -1 anonymous
    platform: np.ndarray
    version: np.ndarray  # index into version_names
    country: np.ndarray
    version_names: list[str]
    bot: np.ndarray  # bool


def country_offsets_ms(country: np.ndarray) -> np.ndarray:
    """UTC offset of each country index, in milliseconds (float)."""
    return np.array([c[1] for c in COUNTRIES])[country] * 3_600_000


def device_versions(rng: np.random.Generator, platform: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """An app version per device (index into the returned names), newest most often."""
    names = [v for p in PLATFORMS for v in APP_VERSIONS[p]]
    which = weighted_choice(rng, APP_VERSION_WEIGHTS, len(platform))
    return platform.astype(np.int64) * 3 + which, names


def build_users(
    rng: np.random.Generator, n: int, catalog: Catalog, days: int, reasons: list[str]
) -> Users:
    C = len(catalog.categories)
    country = weighted_choice(rng, [c[2] for c in COUNTRIES], n)
    offset_ms = country_offsets_ms(country).astype(np.int64)
    pre = rng.random(n) < 0.75
    signup_day = np.where(pre, -1, rng.integers(0, days, n)).astype(np.int64)
    lam = np.minimum(rng.lognormal(np.log(ACTIVITY_MEDIAN), ACTIVITY_SIGMA, n), ACTIVITY_MAX)
    s_aff = rng.beta(2.5 + 2.0 * (lam > 1.0), 1.6)
    bias = rng.normal(0.0, 0.6, n)
    alpha = 0.18 * C * category_weights(catalog.categories)
    pref = rng.dirichlet(alpha, n)
    pref = 0.97 * pref + 0.03 / C
    clpref = rng.dirichlet(np.full(N_CLUSTERS, 0.6), (n, C)).astype(np.float32)
    plan = weighted_choice(rng, PLAN_WEIGHTS, n)

    r = rng.random(n)
    n_dev = 1 + (r > 0.5).astype(np.int64) + (r > 0.85)
    dev_start = np.zeros(n, dtype=np.int64)
    dev_start[1:] = np.cumsum(n_dev)[:-1]
    w = rng.dirichlet(np.ones(3), n) * (np.arange(3)[None, :] < n_dev[:, None])
    w[:, 0] += 1e-9
    dev_cum = np.cumsum(w / w.sum(1, keepdims=True), axis=1)
    dev_cum[:, -1] = 1.0

    # engagement drives churn: low activity and low completion propensity cancel more
    z = (np.log(lam) - np.log(ACTIVITY_MEDIAN)) / ACTIVITY_SIGMA
    engagement = (z + bias / 0.6) / np.sqrt(2.0)
    cancel_day, reason, react_day, delete_day = _churn(rng, engagement, signup_day, days, reasons)
    return Users(
        n=n,
        country=country,
        offset_ms=offset_ms,
        signup_day=signup_day,
        lam=lam,
        s_aff=s_aff,
        bias=bias,
        engagement=engagement,
        pref=pref,
        clpref=clpref,
        plan=plan,
        dev_start=dev_start,
        n_dev=n_dev,
        dev_cum=dev_cum,
        cancel_day=cancel_day,
        reason=reason,
        react_day=react_day,
        delete_day=delete_day,
    )


def _churn(
    rng: np.random.Generator,
    engagement: np.ndarray,
    signup_day: np.ndarray,
    days: int,
    reasons: list[str],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cancel day, reason (index into ``reasons``), reactivation day and deletion day."""
    n = len(engagement)
    p_cancel = np.clip(0.07 * days / 30.0 * 2.0 * sigmoid(-1.6 * engagement), 0.0, 0.85)
    lo = np.maximum(signup_day, 0) + 3
    can = lo < days - 1
    cancels = can & (rng.random(n) < p_cancel)
    deletes = can & ~cancels & (rng.random(n) < min(0.004 * days / 30.0, 0.05))
    span = np.maximum(days - lo, 1)
    cancel_day = np.where(cancels, lo + (rng.random(n) * span).astype(np.int64), NEVER)
    delete_day = np.where(deletes, lo + (rng.random(n) * span).astype(np.int64), NEVER)
    wd = np.array([REASON_WEIGHTS.get(c, REASON_DEFAULT)[0] for c in reasons])
    we = np.array([REASON_WEIGHTS.get(c, REASON_DEFAULT)[1] for c in reasons])
    cum_d = np.cumsum(wd / wd.sum())
    cum_e = np.cumsum(we / we.sum())
    ur = rng.random(n)
    reason = np.where(
        engagement < 0,
        np.searchsorted(cum_d, ur, side="right"),
        np.searchsorted(cum_e, ur, side="right"),
    )
    reason = np.minimum(reason, len(reasons) - 1)
    p_react = np.array([REACTIVATE_P.get(c, REACTIVATE_DEFAULT) for c in reasons])[reason]
    react = cancels & (rng.random(n) < p_react)
    react_day = np.where(react, cancel_day + 7 + rng.geometric(1 / 14, n), NEVER)
    react_day = np.where(react_day < days, react_day, NEVER)
    return cancel_day, reason, react_day, delete_day


def build_devices(rng: np.random.Generator, users: Users, n_anon: int) -> Devices:
    """Each person's devices, then ``n_anon`` anonymous ones (no user)."""
    nd = int(users.n_dev.sum())
    owner = np.repeat(np.arange(users.n), users.n_dev)
    platform = np.concatenate(
        [
            weighted_choice(rng, PLATFORM_WEIGHTS, nd),
            weighted_choice(rng, ANONYMOUS_PLATFORM_WEIGHTS, n_anon),
        ]
    )
    version, names = device_versions(rng, platform)
    anon_country = weighted_choice(rng, [c[2] for c in COUNTRIES], n_anon)
    return Devices(
        user=np.concatenate([owner, np.full(n_anon, -1)]).astype(np.int64),
        platform=platform.astype(np.int64),
        version=version,
        country=np.concatenate([users.country[owner], anon_country]),
        version_names=names,
        bot=np.zeros(nd + n_anon, dtype=bool),
    )


def add_bot_devices(
    rng: np.random.Generator,
    devices: Devices,
    user: list[int],
    platform: list[int],
    country: list[int],
) -> None:
    """Append bot devices (``user`` -1 for scrapers) with their app versions."""
    if not user:
        return
    plat = np.array(platform)
    version, _ = device_versions(rng, plat)
    devices.user = np.concatenate([devices.user, np.array(user)])
    devices.platform = np.concatenate([devices.platform, plat])
    devices.version = np.concatenate([devices.version, version])
    devices.country = np.concatenate([devices.country, np.array(country)])
    devices.bot = np.concatenate([devices.bot, np.ones(len(user), dtype=bool)])
