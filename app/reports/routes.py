"""Supervisors' rankings, drill-down and exports."""
