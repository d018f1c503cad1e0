"""ML: the recommender, scoring, clusters and churn risk as assets (library in ml/)."""
