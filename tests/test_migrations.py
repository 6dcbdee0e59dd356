"""The schema comes from Alembic revisions; they must build exactly what the models say."""
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect

from app import create_app
from app.config import ConfigError, load_config
from app.extensions import db
from tests.conftest import fresh_database


@pytest.fixture
def fresh_url(tmp_path):
    with fresh_database(tmp_path) as url:
        yield url


def test_upgrade_builds_the_models_schema_and_downgrade_removes_it(fresh_url, tmp_path):
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": fresh_url,
            "IMPORT_REPORTS_DIR": str(tmp_path / "r"),
            "UPLOAD_DIR": str(tmp_path / "u"),
            "SAMPLE_LISTS_DIR": str(tmp_path / "s"),
        }
    )
    with app.app_context():
        upgrade()
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), db.metadata)
            tables = set(inspect(conn).get_table_names())
        assert diff == []
        assert {"counties", "institutions", "teams", "residents", "resident_labels", "users", "import_batches"} <= tables
        downgrade(revision="base")
        with db.engine.connect() as conn:
            assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
        db.engine.dispose()


def test_production_refuses_default_secrets(monkeypatch):
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.delenv("ID_HASH_KEY", raising=False)
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        load_config()
    monkeypatch.setenv("SECRET_KEY", "s" * 32)
    with pytest.raises(ConfigError, match="ID_HASH_KEY"):
        load_config()
    monkeypatch.setenv("ID_HASH_KEY", "k" * 32)
    assert load_config()["ID_HASH_KEY"] == "k" * 32


def test_sqlite_runs_with_wal_foreign_keys_and_busy_timeout(tmp_path):
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'p.db'}",
            "IMPORT_REPORTS_DIR": str(tmp_path / "r"),
            "UPLOAD_DIR": str(tmp_path / "u"),
            "SAMPLE_LISTS_DIR": str(tmp_path / "s"),
        }
    )
    with app.app_context():
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
        db.engine.dispose()
