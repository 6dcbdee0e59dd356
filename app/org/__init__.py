from flask import Blueprint

# Views are attached in routes.py, imported by register() (keeps services importable alone).
bp = Blueprint("org", __name__, url_prefix="/org")


def register(app) -> None:
    """Attach this area's views and commands to the application."""
    from app.org import routes  # noqa: F401  (its views attach themselves to bp)
    from app.org.cli import org_cli

    app.register_blueprint(bp)
    app.cli.add_command(org_cli)
