from flask import Blueprint

# Views are attached in routes.py, imported by register() (keeps services importable alone).
bp = Blueprint("audit", __name__, url_prefix="/audit")


def register(app) -> None:
    """Attach this area's views and commands to the application."""
    from app.audit import routes  # noqa: F401  (its views attach themselves to bp)
    from app.audit.cli import audit_cli

    app.register_blueprint(bp)
    app.cli.add_command(audit_cli)
