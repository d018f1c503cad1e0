"""What the domains under defs/ share: spec defaults and the dbt wiring."""
