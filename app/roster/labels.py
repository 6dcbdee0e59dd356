"""The population labels' rows, kept in step with the configured vocabulary."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.populations import Vocabulary
from app.models import PopulationLabel


def sync_labels(session: Session, vocabulary: Vocabulary) -> dict[str, int]:
    """Make sure every configured population has its row; return code -> id."""
    existing = {label.code: label for label in session.scalars(select(PopulationLabel))}
    for code, name in vocabulary.names.items():
        label = existing.get(code)
        if label is None:
            label = PopulationLabel(code=code, name=name)
            session.add(label)
            existing[code] = label
        elif label.name != name:
            label.name = name
    session.flush()
    return {code: label.id for code, label in existing.items()}
