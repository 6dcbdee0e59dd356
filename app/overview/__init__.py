from flask import Blueprint

# The city administrator's landing page; views in routes.py, imported by register().
bp = Blueprint("overview", __name__, url_prefix="/overview")


def register(app) -> None:
    """Attach this area's views and commands to the application."""
    from app.overview import routes  # noqa: F401  (its views attach themselves to bp)

    app.register_blueprint(bp)
