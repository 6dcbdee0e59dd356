"""Personal data kept no longer than needed: the retention period's purge (services.py) and
its command (cli.py); the scheduler runs the same purge every night."""


def register(app) -> None:
    """Attach this area's commands to the application (it has no pages)."""
    from app.privacy.cli import privacy_cli

    app.cli.add_command(privacy_cli)
