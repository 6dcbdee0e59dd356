"""Application factory."""
from __future__ import annotations

import logging
import time
from pathlib import Path

from flask import Flask, g, render_template, request
from sqlalchemy import event, make_url

from app.config import BASE_DIR, INSTANCE_DIR, load_config
from app.core.ids import IdConverter
from app.core.storage import private_sqlite_file, restrict_umask
from app.extensions import csrf, db, login_manager, migrate


def create_app(config: dict | None = None) -> Flask:
    # every file the web workers, commands and the scheduler create is private (0600): all
    # start here, before anything is written
    restrict_umask()
    app = Flask(__name__, instance_path=str(INSTANCE_DIR), instance_relative_config=False)
    app.url_map.converters["int"] = IdConverter  # an id out of range is "no such page", not a crash
    app.config.update(load_config(config))
    for key in ("IMPORT_REPORTS_DIR", "UPLOAD_DIR", "SAMPLE_LISTS_DIR"):
        Path(app.config[key]).mkdir(parents=True, exist_ok=True)
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite:///"):
        database = make_url(app.config["SQLALCHEMY_DATABASE_URI"]).database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
            private_sqlite_file(database)

    if app.config["TRUST_PROXY_HOPS"] > 0:
        from werkzeug.middleware.proxy_fix import ProxyFix

        hops = app.config["TRUST_PROXY_HOPS"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)
    db.init_app(app)
    migrate.init_app(app, db, directory=str(BASE_DIR / "migrations"))
    login_manager.init_app(app)
    csrf.init_app(app)
    with app.app_context():
        _configure_sqlite(db.engine)

    from app.core.populations import load_vocabulary

    app.extensions["vocabulary"] = load_vocabulary(app.config["POPULATIONS_FILE"])
    _load_call_rules(app)

    from app import admin, audit, auth, calls, demo, draws, filters, org, overview, privacy, reports, roster, scheduler

    filters.register(app)
    for area in (auth, roster, org, draws, scheduler, calls, admin, reports, overview, demo, privacy, audit):
        area.register(app)
    _register_error_pages(app)
    _security_headers(app)
    if not app.debug and not app.testing:
        logging.basicConfig(level=logging.INFO)
    if app.config["SCHEDULER_IN_WEB"] and not app.testing:
        from app.scheduler.runner import start_in_web

        app.extensions["scheduler"] = start_in_web(app)
    return app


def _load_call_rules(app: Flask) -> None:
    """Calling hours and the questionnaires, validated at start-up: a bad file stops the
    application with one clear message instead of failing in front of a caller."""
    from app.calls.rules import CallHoursError, CallSettings
    from app.config import ConfigError
    from app.questionnaires import QuestionnaireError, load_questionnaires
    from app.reports.settings import ReportSettings, ReportSettingsError

    try:
        app.extensions["call_settings"] = CallSettings.from_config(app.config)
        app.extensions["questionnaires"] = load_questionnaires(app.config["QUESTIONNAIRES_DIR"])
        app.extensions["report_settings"] = ReportSettings.from_config(app.config)
    except (CallHoursError, QuestionnaireError, ReportSettingsError) as exc:
        raise ConfigError(str(exc)) from exc
    if app.config["QUESTIONNAIRE_VERSION"] not in app.extensions["questionnaires"]:
        raise ConfigError(
            f"QUESTIONNAIRE_VERSION={app.config['QUESTIONNAIRE_VERSION']} 没有对应的问卷文件"
            f"（{app.config['QUESTIONNAIRES_DIR']}）。"
        )


def _configure_sqlite(engine) -> None:
    """WAL, a busy timeout and foreign keys for the embedded database, and real transactions:
    pysqlite's own BEGIN handling is switched off so SQLAlchemy's BEGIN covers DDL too (the
    recipe in SQLAlchemy's SQLite dialect documentation)."""
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA temp_store=MEMORY")  # temporary tables and sorts in memory
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        # BEGIN IMMEDIATE takes the write lock at once (see app/core/locks.py), so a transaction
        # that must not interleave with another writer waits its turn instead of failing
        immediate = conn.get_execution_options().get("sqlite_immediate")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


# The error page when even the template cannot be rendered (the database is down, say):
# plain, Chinese, with nothing in it that needs the application.
FALLBACK_ERROR_PAGE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>{code} 出错了</title></head>
<body><h1>{code}</h1><p>{message}</p><p><a href="/">返回首页</a></p></body></html>
"""


def _register_error_pages(app: Flask) -> None:
    from flask_wtf.csrf import CSRFError
    from markupsafe import escape
    from sqlalchemy.exc import DataError

    messages = {
        400: "请求无效。",
        403: "您没有权限访问此页面。",
        404: "页面不存在，或您无权查看。",
        405: "不允许的请求方式。",
        413: "上传的文件过大。",
        500: "服务器内部错误，请稍后再试或联系管理员。",
    }

    def render(code: int, message: str | None = None):
        message = message or messages[code]
        try:
            if code >= 500:
                # a failed statement may have left the transaction unusable (PostgreSQL): the
                # page itself reads the signed-in user
                db.session.rollback()
            return render_template("errors/error.html", code=code, message=message), code
        except Exception:  # noqa: BLE001 - the error page must not fail in its turn
            app.logger.exception("the error page could not be rendered")
            page = FALLBACK_ERROR_PAGE.format(code=code, message=escape(message))
            return page, code, {"Content-Type": "text/html; charset=utf-8"}

    @app.errorhandler(CSRFError)
    def _csrf(_exc):
        return render(400, "表单已过期或来源无效，请刷新页面后重试。")

    @app.errorhandler(DataError)
    def _bad_text(exc):
        # PostgreSQL refuses text holding a NUL: input that no form caught (a query string, a
        # field read straight from the request) is bad input, not a server error
        if "NUL" not in str(getattr(exc, "orig", exc)):
            return render(500)
        try:
            db.session.rollback()
        except Exception:  # noqa: BLE001
            pass
        return render(400, "提交的内容不能包含控制字符。")

    for code in messages:
        app.register_error_handler(code, lambda exc, code=code: render(code))


def _security_headers(app: Flask) -> None:
    @app.before_request
    def _start_clock():
        g.request_started = time.perf_counter()

    @app.after_request
    def _headers(response):
        # the server's own time for this request (bench/callers.py reads it)
        started = g.get("request_started")
        if started is not None:
            response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.2f}"
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
        )
        # pages, downloads (send_file says "no-cache") and JSON may hold personal data: no copy
        # in the browser's or a proxy's cache; style sheets and scripts keep theirs
        endpoint = request.endpoint or ""
        if endpoint != "static" and not endpoint.endswith(".static"):
            response.headers["Cache-Control"] = "no-store"
            response.headers.pop("ETag", None)
            response.headers.pop("Last-Modified", None)
        response.headers.pop("Server", None)  # the application names no server (docs/deploy.md)
        return response
