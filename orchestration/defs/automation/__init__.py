"""Automation: the policy of the whole graph, its sensor, freshness checks, build_warehouse."""
