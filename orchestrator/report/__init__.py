"""Runs → pandas frames → renderers. pandas is imported only when a report is built."""
