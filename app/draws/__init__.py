from flask import Blueprint

# Views are attached in routes.py, imported by register() (keeps services importable alone).
bp = Blueprint("draws", __name__, url_prefix="/draws")


def register(app) -> None:
    """Attach this area's views and commands to the application."""
    from app.draws import routes  # noqa: F401  (its views attach themselves to bp)
    from app.draws.cli import draw_cli, export_cli

    app.register_blueprint(bp)
    app.cli.add_command(draw_cli)
    app.cli.add_command(export_cli)
