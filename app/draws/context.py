"""What the draw needs from the application, gathered at the boundary (CLI, view, job)."""
from __future__ import annotations

from flask import Flask
from sqlalchemy.orm import Session

from app.draws.calllists import write_call_list
from app.draws.services import DrawSettings


def draw_settings(app: Flask, **overrides) -> DrawSettings:
    return DrawSettings.from_config(app.config, app.extensions["vocabulary"].default_code, **overrides)


def call_list_writer(app: Flask, session: Session):
    base = app.config["SAMPLE_LISTS_DIR"]
    return lambda round_id: write_call_list(session, round_id, base)

