"""Every module here is loaded by definitions.py; one folder per domain, resources beside."""
