from flask import Blueprint

# Views are attached in routes.py, imported by register() (keeps services importable alone).
bp = Blueprint("scheduler", __name__, url_prefix="/scheduler")


def register(app) -> None:
    """Attach this area's views and commands to the application."""
    from app.scheduler import routes  # noqa: F401  (its views attach themselves to bp)
    from app.scheduler.cli import scheduler_cli

    app.register_blueprint(bp)
    app.cli.add_command(scheduler_cli)
