from pathlib import Path

from flask import Flask

from app.core.upload_guard import ReadLimits
from app.roster.batch import ImportContext


def import_context(app: Flask, actor: str, user_id: int | None = None) -> ImportContext:
    """The application's settings an import needs, gathered at the boundary."""
    return ImportContext(
        hash_key=app.config["ID_HASH_KEY"].encode("utf-8"),
        vocabulary=app.extensions["vocabulary"],
        reports_dir=Path(app.config["IMPORT_REPORTS_DIR"]),
        actor=actor,
        user_id=user_id,
        chunk_rows=app.config["IMPORT_CHUNK_ROWS"],
        workers=app.config["IMPORT_WORKERS"],
        read_limits=ReadLimits.from_config(app.config),
    )
