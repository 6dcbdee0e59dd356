from flask import Blueprint

# Views are attached in routes.py, imported by register() (keeps services importable alone).
bp = Blueprint("calls", __name__, url_prefix="/calls")


def register(app) -> None:
    """Attach this area's views and commands to the application."""
    from app.calls import routes  # noqa: F401  (its views attach themselves to bp)

    app.register_blueprint(bp)
