"""What BI tools and people read: the marts snapshot and the pipeline report."""
