from flask import Blueprint

# Views are attached in routes.py, imported by register() (keeps services importable alone).
bp = Blueprint("roster", __name__, url_prefix="/roster")


def register(app) -> None:
    """Attach this area's views and commands to the application."""
    from app.roster import routes  # noqa: F401  (its views attach themselves to bp)
    from app.roster.cli import roster_cli

    app.register_blueprint(bp)
    app.cli.add_command(roster_cli)
