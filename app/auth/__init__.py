from flask import Blueprint

# Views are attached in routes.py, imported by register() (keeps services importable alone).
bp = Blueprint("auth", __name__)


def register(app) -> None:
    """Attach this area's views and commands to the application."""
    from app.auth import routes  # noqa: F401  (its views attach themselves to bp)
    from app.auth.cli import users_cli

    app.register_blueprint(bp)
    app.cli.add_command(users_cli)
