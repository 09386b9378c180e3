"""Campaigns (``orchestrate sweep``): a sweep file expanded into cells and planned (:mod:`.matrix`), then run under a
budget, resumably (:mod:`.runner`)."""

from orchestrator.campaign.matrix import (
    Cell,
    Matrix,
    PlannedCell,
    SweepSpec,
    check_cell_params,
    expand,
    load_sweep,
    plan_matrix,
)

__all__ = ["Cell", "Matrix", "PlannedCell", "SweepSpec", "check_cell_params", "expand", "load_sweep", "plan_matrix"]
