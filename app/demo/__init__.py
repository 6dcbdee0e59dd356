"""Demo data: a synthetic city, its rosters and months of survey work (flask demo …)."""


def register(app) -> None:
    """Attach this area's views and commands to the application."""
    from app.demo.cli import demo_cli

    app.cli.add_command(demo_cli)
