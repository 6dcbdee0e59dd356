from flask import Blueprint

# Views are attached in routes.py and problem_routes.py, imported by register(). Rules are
# written out in full: the reports live under /reports/, and the progress board keeps its
# address /calls/board.
bp = Blueprint("reports", __name__)


def register(app) -> None:
    """Attach this area's views and commands to the application."""
    from app.reports import routes  # noqa: F401  (its views attach themselves to bp)
    from app.reports import problem_routes  # noqa: F401  (its views attach themselves to bp)
    from app.reports.cli import report_cli

    app.register_blueprint(bp)
    app.cli.add_command(report_cli)
