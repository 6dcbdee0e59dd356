"""The schema comes from Alembic revisions; they must build exactly what the models say."""
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect, text

from app import create_app
from app.config import ConfigError, load_config
from app.extensions import db
from tests.helpers import fresh_database


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


def test_0005_cuts_stored_id_hashes_and_keeps_every_resident_and_label(fresh_url, tmp_path):
    """0005 rebuilds the residents table on SQLite (the unique constraint becomes an index):
    the labels that point at residents (ON DELETE CASCADE) must survive it, and a hash stored
    in full before must still match the person's hash afterwards."""
    import hmac

    from app.core.masking import hash_id

    key = b"migration-key-0123456789"
    people = ["110105194912310025", "430621198001010018"]
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": fresh_url,
            "ID_HASH_KEY": key.decode(),
            "IMPORT_REPORTS_DIR": str(tmp_path / "r"),
            "UPLOAD_DIR": str(tmp_path / "u"),
            "SAMPLE_LISTS_DIR": str(tmp_path / "s"),
        }
    )
    stamp = "2026-01-02 03:04:05"
    with app.app_context():
        upgrade(revision="0004")
        with db.engine.begin() as conn:
            run = lambda sql, **params: conn.execute(text(sql), params)  # noqa: E731
            run("INSERT INTO counties (id, name, code, created_at) VALUES (1, '岳阳县', '430621', :t)", t=stamp)
            run("INSERT INTO institutions (id, county_id, name, code, type, created_at) "
                "VALUES (1, 1, '荣家湾镇卫生院', 'I1', '乡镇卫生院', :t)", t=stamp)
            run("INSERT INTO teams (id, institution_id, name, created_at) VALUES (1, 1, '一组', :t)", t=stamp)
            run("INSERT INTO population_labels (id, code, name) VALUES (1, 'elderly', '老年人')")
            for n, person in enumerate(people, start=1):
                full = hmac.digest(key, person.encode(), "sha256").hex()  # how 0001-0004 stored it
                run("INSERT INTO residents (id, id_hash, id_masked, name, sex, birth_date, phone, team_id, "
                    "contract_start, contract_end, active, do_not_call, created_at, updated_at) VALUES "
                    "(:id, :h, 'x', '某', 'F', '1949-12-31', '13800138000', 1, '2026-01-01', '2026-12-31', "
                    ":yes, :no, :t, :t)", id=n, h=full, t=stamp, yes=True, no=False)
                run("INSERT INTO resident_labels (resident_id, label_id) VALUES (:id, 1)", id=n)

        upgrade()

        with db.engine.connect() as conn:
            stored = dict(conn.execute(text("SELECT id, id_hash FROM residents")).all())
            assert stored == {n: hash_id(key, person) for n, person in enumerate(people, start=1)}
            assert conn.execute(text("SELECT count(*) FROM resident_labels")).scalar() == 2
            indexes = {i["name"]: i for i in inspect(conn).get_indexes("residents")}
            assert indexes["uq_residents_id_hash"]["unique"]
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), db.metadata)
        assert diff == []
        # the cut cannot be undone: a populated database refuses to go back past 0005
        downgrade(revision="0005")
        with pytest.raises(SystemExit):  # Flask-Migrate logs the migration's error and exits 1
            downgrade(revision="0004")
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM resident_labels")).scalar() == 2
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0005"
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


def test_0006_gives_existing_users_a_case_folded_key_and_keeps_units_active(fresh_url, tmp_path):
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": fresh_url,
            "IMPORT_REPORTS_DIR": str(tmp_path / "r"),
            "UPLOAD_DIR": str(tmp_path / "u"),
            "SAMPLE_LISTS_DIR": str(tmp_path / "s"),
        }
    )
    stamp = "2026-01-02 03:04:05"
    with app.app_context():
        upgrade(revision="0005")
        with db.engine.begin() as conn:
            run = lambda sql, **params: conn.execute(text(sql), params)  # noqa: E731
            run("INSERT INTO counties (id, name, code, created_at) VALUES (1, '岳阳县', '430621', :t)", t=stamp)
            run("INSERT INTO institutions (id, county_id, name, code, type, created_at) "
                "VALUES (1, 1, '荣家湾镇卫生院', 'I1', '乡镇卫生院', :t)", t=stamp)
            run("INSERT INTO teams (id, institution_id, name, created_at) VALUES (1, 1, '一组', :t)", t=stamp)
            for n, name in enumerate(["Admin", "yyx_Caller"], start=1):
                run("INSERT INTO users (id, username, password_hash, role, county_id, is_enabled, created_at) "
                    "VALUES (:id, :u, 'x', 'caller', 1, :yes, :t)", id=n, u=name, yes=True, t=stamp)
        upgrade(revision="0006")  # this revision's own steps, whatever comes after it
        with db.engine.begin() as conn:
            keys = dict(conn.execute(text("SELECT username, username_key FROM users")).all())
            assert keys == {"Admin": "admin", "yyx_Caller": "yyx_caller"}
            assert conn.execute(text("SELECT must_change_password FROM users WHERE id = 1")).scalar() in (False, 0)
            for table in ("counties", "institutions", "teams"):
                assert conn.execute(text(f"SELECT active FROM {table}")).scalar() in (True, 1)
            # a name differing only in case is refused by the database itself
            with pytest.raises(Exception):
                with conn.begin_nested():
                    conn.execute(text("INSERT INTO users (username, username_key, password_hash, role, county_id, "
                                      "is_enabled, must_change_password, created_at) VALUES ('ADMIN', 'admin', 'x', "
                                      "'caller', 1, :yes, :no, :t)"), {"yes": True, "no": False, "t": stamp})
            conn.execute(text("UPDATE institutions SET type = '社区卫生服务站'"))
        # an institution type that 0005 did not know cannot be taken back
        with pytest.raises(SystemExit):
            downgrade(revision="0005")
        with db.engine.begin() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0006"
            conn.execute(text("UPDATE institutions SET type = '乡镇卫生院'"))
        downgrade(revision="0005")
        db.engine.dispose()


def test_0010_cuts_masked_ids_to_the_last_four_and_drops_the_cases_birth_date(fresh_url, tmp_path):
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": fresh_url,
            "IMPORT_REPORTS_DIR": str(tmp_path / "r"),
            "UPLOAD_DIR": str(tmp_path / "u"),
            "SAMPLE_LISTS_DIR": str(tmp_path / "s"),
        }
    )
    stamp = "2026-01-02 03:04:05"
    with app.app_context():
        upgrade(revision="0006")
        with db.engine.begin() as conn:
            run = lambda sql, **params: conn.execute(text(sql), params)  # noqa: E731
            run("INSERT INTO counties (id, name, code, created_at) VALUES (1, '岳阳县', '430621', :t)", t=stamp)
            run("INSERT INTO institutions (id, county_id, name, code, type, created_at) "
                "VALUES (1, 1, '荣家湾镇卫生院', 'I1', '乡镇卫生院', :t)", t=stamp)
            run("INSERT INTO teams (id, institution_id, name, created_at) VALUES (1, 1, '一组', :t)", t=stamp)
            for n, masked in enumerate(["430621********123X", "110105********002X", "12***"], start=1):
                run("INSERT INTO residents (id, id_hash, id_masked, name, sex, birth_date, phone, team_id, "
                    "contract_start, contract_end, active, do_not_call, created_at, updated_at) VALUES "
                    "(:id, :h, :m, '某', 'F', '1949-12-31', '13800138000', 1, '2026-01-01', '2026-12-31', "
                    ":yes, :no, :t, :t)", id=n, h=f"{n:032x}", m=masked, t=stamp, yes=True, no=False)
            run("INSERT INTO rounds (id, county_id, month, status, algorithm, county_code, salt, seed, draw_date, "
                "sample_size, backup_size, exclusion_months, questionnaire_version, eligible_count, eligible_hash, "
                "institutions, primaries, backups, shortfall_institutions, triggered_by, drawn_at, redraws) VALUES "
                "(1, 1, '2026-11', 'open', 'lottery-v1', '430621', 's', '0', '2026-11-01', 10, 0, 6, 'v1', 1, '', "
                "1, 1, 0, 0, 'test', :t, 0)", t=stamp)
            run("INSERT INTO cases (id, round_id, institution_id, team_id, resident_id, kind, position, status, "
                "attempt_count, name, sex, birth_date, age, phone, institution_name, team_name, population_labels, "
                "key_population, contract_start, contract_end) VALUES (1, 1, 1, 1, 1, 'primary', 1, 'queued', 0, "
                "'某', 'F', '1949-12-31', 76, '13800138000', 'x', '一组', '', :no, '2026-01-01', '2026-12-31')",
                no=False)
            run("INSERT INTO users (id, username, username_key, password_hash, role, county_id, is_enabled, "
                "must_change_password, created_at) VALUES (1, 'c', 'c', 'x', 'caller', 1, :yes, :no, :t)",
                yes=True, no=False, t=stamp)
            run("INSERT INTO attempts (id, case_id, round_id, number, caller_id, started_at, connected) "
                "VALUES (1, 1, 1, 1, 1, :t, :no)", t=stamp, no=False)
        upgrade()
        with db.engine.connect() as conn:
            masks = dict(conn.execute(text("SELECT id, id_masked FROM residents")).all())
            assert masks == {1: "**************123X", 2: "**************002X", 3: "12***"}
            assert "birth_date" not in {c["name"] for c in inspect(conn).get_columns("cases")}
            assert conn.execute(text("SELECT count(*) FROM attempts")).scalar() == 1  # the case kept its calls
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), db.metadata)
        assert diff == []
        downgrade(revision="0006")
        with db.engine.connect() as conn:
            assert str(conn.execute(text("SELECT birth_date FROM cases")).scalar())[:10] == "1950-01-01"
            assert conn.execute(text("SELECT count(*) FROM attempts")).scalar() == 1
        db.engine.dispose()
