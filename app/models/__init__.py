"""All models, importable from one place (Alembic's autogenerate sees them here)."""
from app.models.audit import AuditLog, audit
from app.models.auth import ROLES, LoginAttempt, User, UserSession, username_key
from app.models.calls import PROBLEM_STATUS_LABELS, PROBLEM_STATUSES, RESPONSE_STATUSES, AnswerEdit, Attempt, Problem, Response
from app.models.org import INSTITUTION_TYPES, UNIT_KINDS, County, Institution, OrgChange, Team
from app.models.roster import ImportBatch, PopulationLabel, Resident, resident_labels
from app.models.survey import (
    CASE_KINDS,
    CASE_STATE_LABELS,
    CASE_STATUSES,
    OUTCOME_COMPLETE,
    OUTCOME_OPEN_AT_CLOSE,
    Case,
    Round,
    RoundInstitution,
    SchedulerHeartbeat,
    SchedulerRun,
)

__all__ = [
    "AnswerEdit",
    "Attempt",
    "LoginAttempt",
    "UserSession",
    "PROBLEM_STATUS_LABELS",
    "PROBLEM_STATUSES",
    "Problem",
    "RESPONSE_STATUSES",
    "Response",
    "CASE_KINDS",
    "CASE_STATE_LABELS",
    "CASE_STATUSES",
    "Case",
    "OUTCOME_COMPLETE",
    "OUTCOME_OPEN_AT_CLOSE",
    "Round",
    "RoundInstitution",
    "SchedulerHeartbeat",
    "SchedulerRun",
    "AuditLog",
    "audit",
    "County",
    "INSTITUTION_TYPES",
    "OrgChange",
    "UNIT_KINDS",
    "ImportBatch",
    "Institution",
    "PopulationLabel",
    "ROLES",
    "Resident",
    "Team",
    "User",
    "resident_labels",
    "username_key",
]
