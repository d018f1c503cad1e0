"""Ingest: landing files into the raw tables, by landing day, and what starts it."""
