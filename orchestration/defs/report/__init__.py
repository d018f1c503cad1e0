"""Report: the pipeline report and the staging quarantine check."""
