from flask import Blueprint

# The city administrator's landing page; views in routes.py, imported by create_app().
bp = Blueprint("overview", __name__, url_prefix="/overview")
