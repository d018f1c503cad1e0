"""The dbt project, its translator and the production build every dbt asset set runs."""
