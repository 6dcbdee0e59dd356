from flask import Blueprint

# Views are attached in routes.py, imported by create_app() (keeps services importable alone).
bp = Blueprint("calls", __name__, url_prefix="/calls")
