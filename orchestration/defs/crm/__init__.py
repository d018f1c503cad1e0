"""CRM: the export dbt models, the deletion pass, the GX gates and the sync."""
