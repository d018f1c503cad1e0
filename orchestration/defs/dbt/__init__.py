"""dbt: the warehouse models from the daily layer up to the marts."""
