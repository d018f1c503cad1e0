"""The real-time path beside the warehouse: `ottp serve` (event intake, live state, profiles).

It uses the batch path's contract, rules and landing files, so the two never
disagree; docs/realtime.md gives the design.
"""
