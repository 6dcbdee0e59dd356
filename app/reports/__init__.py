from flask import Blueprint

# Views are attached in routes.py and problems.py, imported by create_app().
bp = Blueprint("reports", __name__, url_prefix="/reports")
