"""Fixtures: an app bound to a database of its own, a client, a CLI runner, factories.

The database is SQLite (a file in a temporary folder) unless TEST_DATABASE_URL points at a
PostgreSQL server, in which case a fresh database is created for the run and dropped at
the end: nothing relies on what an earlier run left.
"""
from __future__ import annotations

import pytest

from app import create_app
from app.extensions import db
from app.models import County, Institution, Team, User
from tests.helpers import PASSWORD, csrf_token, empty_tables, fresh_database
from tests.rosters import INSTITUTION, TEAM


@pytest.fixture(scope="session")
def database_url(tmp_path_factory):
    with fresh_database(tmp_path_factory.mktemp("db")) as url:
        yield url


@pytest.fixture(scope="session")
def make_app(database_url, tmp_path_factory):
    """Build an app on the run's database; tests that need other settings call it."""
    apps = []

    def factory(**overrides):
        base = tmp_path_factory.mktemp("instance")
        config = {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": database_url,
            "SECRET_KEY": "test-secret-key-0123456789",
            "ID_HASH_KEY": "test-id-hash-key-0123456789",
            "IMPORT_REPORTS_DIR": str(base / "reports"),
            "UPLOAD_DIR": str(base / "uploads"),
            "SAMPLE_LISTS_DIR": str(base / "sample_lists"),
            "WTF_CSRF_ENABLED": True,
        }
        config.update(overrides)
        app = create_app(config)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        with app.app_context():
            db.engine.dispose()


@pytest.fixture(scope="session")
def _schema(make_app):
    app = make_app()
    with app.app_context():
        db.drop_all()
        db.create_all()
    return app


@pytest.fixture
def app(_schema):
    """The session's app with empty tables for each test."""
    with _schema.app_context():
        yield _schema
        db.session.remove()
        empty_tables()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def dialect(app):
    return db.engine.dialect.name


# ---------------------------------------------------------------------------
# Factories: callables that create rows and commit them. They commit rather than flush
# because what the tests then call is a boundary (a view, a CLI command, a job,
# draw_month_and_commit, calls_support.committed): it begins its own write transaction and
# refuses a session that still holds uncommitted writes (LockOrderError), or it runs in a
# session, thread or process of its own.
# ---------------------------------------------------------------------------


@pytest.fixture
def make_county(app):
    counter = iter(range(1, 10_000))

    def make(name: str = "岳阳县", code: str | None = None) -> County:
        county = County(name=name, code=code or f"4306{next(counter):02d}")
        db.session.add(county)
        db.session.commit()  # not flush: see "Factories" above
        return county

    return make


@pytest.fixture
def make_team(app):
    def make(county: County, institution: str = "新墙镇卫生院", team: str = "张伟家庭医生团队") -> Team:
        inst = db.session.scalar(
            db.select(Institution).where(Institution.county_id == county.id, Institution.name == institution)
        )
        if inst is None:
            inst = Institution(county_id=county.id, name=institution, type="乡镇卫生院")
            db.session.add(inst)
            db.session.flush()
        obj = Team(institution_id=inst.id, name=team, leader_doctor="张伟")
        db.session.add(obj)
        db.session.commit()  # not flush: see "Factories" above
        return obj

    return make


@pytest.fixture
def county(make_county):
    return make_county("岳阳县", "430621")


@pytest.fixture
def team(county, make_team):
    return make_team(county, INSTITUTION, TEAM)


@pytest.fixture
def make_user(app):
    def make(username: str, role: str = "admin", county: County | None = None, password: str = PASSWORD, *,
             real_name: str | None = None, phone: str | None = None, must_change_password: bool = False) -> User:
        user = User(username=username, role=role, county_id=county.id if county else None, real_name=real_name,
                    phone=phone, must_change_password=must_change_password)
        user.set_password(password)
        db.session.add(user)
        db.session.commit()  # not flush: see "Factories" above
        return user

    return make


@pytest.fixture
def login(client):
    def do(username: str, password: str = PASSWORD):
        page = client.get("/")
        response = client.post(
            "/", data={"username": username, "password": password, "csrf_token": csrf_token(page.get_data(as_text=True))}
        )
        assert response.status_code == 302, response.get_data(as_text=True)[:500]
        return response

    return do

