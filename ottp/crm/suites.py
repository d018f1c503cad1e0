"""The expectations of each export table's quality suite, and the limits they use.

One function per table lists its Great Expectations 1.x expectations over the
table's validation frame (``ottp.crm.gates.FRAMES``); docs/crm-exports.md lists
them in words. The allowed value sets come from the export contract
(``ottp.crm.contract``), the one place they are written in Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from ottp import config
from ottp.crm.contract import (
    LIFECYCLE_STAGES,
    RISK_BANDS,
    SCENARIOS,
    SEGMENTS,
    SUBJECT_TYPES,
    SUBSCRIPTION_STATUSES,
)
from ottp.crm.targets import LastSync


@dataclass(frozen=True)
class Limits:
    """Bounds of the gates; the defaults are the production ones."""

    # Most recommendations a contact may get (dbt var crm_max_recommendations).
    max_recommendations: int = 50
    # Share of contacts that must have 1..max_recommendations recommendations.
    contacts_with_recommendations: float = 0.99
    # Circuit breaker: rows may fall by at most this share of the last successful
    # sync, and grow by at most this share.
    max_drop: float = 0.2
    max_growth: float = 1.0
    # Tables smaller than this at the last sync are not bounded (noise).
    min_rows_for_bound: int = 100
    # Tables the row-count bound applies to (triggers come and go by nature).
    bounded_tables: tuple[str, ...] = ("crm_contacts", "crm_recommendations", "crm_similar_titles")
    # Fail when the warehouse's as_of is older than this (OTTP_EXPORT_MAX_AGE_HOURS).
    max_age_hours: float | None = None


def default_limits() -> Limits:
    """The production limits, the freshness bound from the environment (ottp.config)."""
    return Limits(max_age_hours=config.export_max_age_hours())


def suite_expectations(table: str, limits: Limits, last: LastSync | None, now: datetime):
    """The expectations of ``table``'s suite under these limits."""
    import great_expectations as gx

    if table not in _SUITES:
        raise ValueError(f"no suite for {table!r}")
    return _SUITES[table](gx.expectations, limits, last, now)


def _contacts_suite(E, limits: Limits, last: LastSync | None, now: datetime) -> list:
    """crm_contacts: keys, allowed values, consent, recommendations, freshness."""
    out = [
        E.ExpectColumnValuesToNotBeNull(column="user_id", description="key not null"),
        E.ExpectColumnValuesToBeUnique(column="user_id", description="key unique"),
        E.ExpectColumnValuesToBeInSet(
            column="lifecycle_stage",
            value_set=LIFECYCLE_STAGES,
            description="lifecycle stage in the allowed set",
        ),
        E.ExpectColumnValuesToNotBeNull(column="lifecycle_stage", description="stage set"),
        E.ExpectColumnValuesToBeInSet(
            column="highest_segment",
            value_set=SEGMENTS,
            description="segment in the allowed set",
        ),
        E.ExpectColumnValuesToNotBeNull(column="highest_segment", description="segment set"),
        E.ExpectColumnValuesToBeInSet(
            column="subscription_status",
            value_set=SUBSCRIPTION_STATUSES,
            description="subscription status in the allowed set",
        ),
        E.ExpectColumnValuesToBeInSet(
            column="churn_risk_band",
            value_set=RISK_BANDS,
            description="churn risk band in the allowed set",
        ),
        E.ExpectColumnValuesToBeBetween(
            column="churn_risk", min_value=0, max_value=1, description="churn risk in 0..1"
        ),
        E.ExpectColumnValuesToBeInSet(
            column="may_be_contacted",
            value_set=[True],
            description="no opted-out or deleted user",
        ),
        E.ExpectColumnValuesToBeBetween(
            column="exported_recommendations",
            min_value=1,
            max_value=limits.max_recommendations,
            mostly=limits.contacts_with_recommendations,
            description=f"1..{limits.max_recommendations} recommendations per contact "
            f"(at least {limits.contacts_with_recommendations:.0%} of contacts)",
        ),
        E.ExpectColumnValuesToNotBeNull(column="as_of_at", description="warehouse as_of known"),
    ]
    if last is not None and last.source_as_of is not None:
        out.append(
            E.ExpectColumnMinToBeBetween(
                column="as_of_at",
                min_value=last.source_as_of,
                description="freshness: data not older than the last successful sync's",
            )
        )
    if limits.max_age_hours is not None:
        out.append(
            E.ExpectColumnMaxToBeBetween(
                column="as_of_at",
                min_value=now - timedelta(hours=limits.max_age_hours),
                description=f"freshness: as_of within {limits.max_age_hours:g} h of now",
            )
        )
    return out


def _recommendations_suite(E, limits: Limits, last: LastSync | None, now: datetime) -> list:
    """crm_recommendations, one row per user: keys, ranks, titles, consent."""
    out = [
        E.ExpectColumnValuesToNotBeNull(column="user_id", description="key not null"),
        E.ExpectColumnValuesToBeBetween(
            column="null_key_count", max_value=0, description="rank and title not null"
        ),
        E.ExpectColumnValuesToBeBetween(
            column="duplicate_rank_count", max_value=0, description="key (user_id, rank) unique"
        ),
        E.ExpectColumnValuesToBeBetween(
            column="recommendation_count",
            min_value=1,
            max_value=limits.max_recommendations,
            description=f"1..{limits.max_recommendations} recommendations per user",
        ),
        E.ExpectColumnValuesToBeBetween(
            column="rank_gap_count",
            min_value=0,
            max_value=0,
            description="ranks run 1..n without gaps",
        ),
        E.ExpectColumnValuesToBeBetween(
            column="duplicate_title_count",
            max_value=0,
            description="a title recommended once per user",
        ),
        E.ExpectColumnValuesToBeBetween(
            column="watched_count", max_value=0, description="none already watched"
        ),
        E.ExpectColumnValuesToBeBetween(
            column="outside_catalog_count",
            max_value=0,
            description="none outside the catalog (unknown or unavailable title)",
        ),
        E.ExpectColumnValuesToBeInSet(
            column="may_be_contacted",
            value_set=[True],
            description="no opted-out or deleted user",
        ),
    ]
    return out


def _similar_titles_suite(E, limits: Limits, last: LastSync | None, now: datetime) -> list:
    """crm_similar_titles: keys, ranks, both titles in the catalog."""
    out = [
        E.ExpectColumnValuesToNotBeNull(column="title_id", description="key not null"),
        E.ExpectColumnValuesToNotBeNull(column="rank", description="key not null"),
        E.ExpectColumnValuesToBeUnique(column="row_key", description="key (title_id, rank) unique"),
        E.ExpectColumnValuesToNotBeNull(column="similar_title_id", description="title set"),
        E.ExpectColumnValuesToBeBetween(column="rank", min_value=1, description="rank from 1"),
        E.ExpectColumnValuesToBeInSet(
            column="is_in_catalog",
            value_set=[True],
            description="both titles in the catalog",
        ),
        E.ExpectColumnValuesToBeInSet(
            column="is_self", value_set=[False], description="a title is not similar to itself"
        ),
    ]
    return out


def _triggers_suite(E, limits: Limits, last: LastSync | None, now: datetime) -> list:
    """crm_triggers: keys, allowed values, consent, a contact's trigger."""
    out = [
        E.ExpectColumnValuesToNotBeNull(column="trigger_id", description="key not null"),
        E.ExpectColumnValuesToBeUnique(column="trigger_id", description="key unique"),
        E.ExpectColumnValuesToBeInSet(
            column="scenario", value_set=SCENARIOS, description="scenario in the allowed set"
        ),
        E.ExpectColumnValuesToBeInSet(
            column="subject_type",
            value_set=SUBJECT_TYPES,
            description="subject type in the allowed set",
        ),
        E.ExpectColumnValuesToNotBeNull(column="subject_id", description="subject set"),
        E.ExpectColumnValuesToBeInSet(
            column="may_be_contacted",
            value_set=[True],
            description="no opted-out or deleted user",
        ),
        E.ExpectColumnValuesToBeInSet(
            column="is_contact", value_set=[True], description="user is a crm_contacts row"
        ),
    ]
    return out


_SUITES = {
    "crm_contacts": _contacts_suite,
    "crm_recommendations": _recommendations_suite,
    "crm_similar_titles": _similar_titles_suite,
    "crm_triggers": _triggers_suite,
}
