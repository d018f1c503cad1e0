"""The CRM side: the export contract, the quality gates and the reverse-ETL sync."""
