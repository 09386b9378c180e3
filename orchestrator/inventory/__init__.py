"""Rented and owned boxes reached over SSH: the inventory file (:mod:`orchestrator.inventory.model`)."""
