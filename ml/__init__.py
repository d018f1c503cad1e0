"""Recommendations, taste clusters and churn risk over the warehouse marts.

A plain library: functions over DuckDB connections, numpy arrays and scipy
sparse matrices, with no Dagster imports. `orchestration/defs/ml/` turns them
into assets; `ottp movielens-benchmark` runs the same code on MovieLens.
"""
