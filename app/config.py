"""Settings from the environment.

Development runs with safe defaults; production (``APP_ENV=production``) refuses to
start without real secrets, because the ID hash key decides whether the same resident
is recognised across imports and must never be a well-known value.
"""
from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
INSTANCE_DIR = BASE_DIR / "instance"

DEV_SECRET_KEY = "dev-only-secret-key-change-me"
DEV_ID_HASH_KEY = "dev-only-id-hash-key-change-me"


class ConfigError(RuntimeError):
    """Raised when the configuration cannot run safely."""


def _bool(value: str | None, default: bool = False) -> bool:
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def load_config(overrides: dict | None = None) -> dict:
    env = os.environ
    app_env = env.get("APP_ENV", "development")
    cfg: dict = {
        "APP_ENV": app_env,
        "SECRET_KEY": env.get("SECRET_KEY") or DEV_SECRET_KEY,
        "ID_HASH_KEY": env.get("ID_HASH_KEY") or DEV_ID_HASH_KEY,
        "SQLALCHEMY_DATABASE_URI": env.get("DATABASE_URL")
        or f"sqlite:///{INSTANCE_DIR / 'survey.db'}",
        "SAMPLE_LISTS_DIR": env.get("SAMPLE_LISTS_DIR") or str(BASE_DIR / "sample_lists"),
        "IMPORT_REPORTS_DIR": env.get("IMPORT_REPORTS_DIR") or str(INSTANCE_DIR / "import_reports"),
        "UPLOAD_DIR": env.get("UPLOAD_DIR") or str(INSTANCE_DIR / "uploads"),
        "POPULATIONS_FILE": env.get("POPULATIONS_FILE")
        or str(Path(__file__).resolve().parent / "populations.json"),
        "DISPLAY_TIMEZONE": "Asia/Shanghai",
        "MAX_CONTENT_LENGTH": int(env.get("MAX_UPLOAD_MB", "200")) * 1024 * 1024,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": _bool(env.get("SESSION_COOKIE_SECURE"), app_env == "production"),
        "REMEMBER_COOKIE_HTTPONLY": True,
        "WTF_CSRF_TIME_LIMIT": 8 * 3600,
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        "IMPORT_CHUNK_ROWS": int(env.get("IMPORT_CHUNK_ROWS", "100000")),
        "IMPORT_WORKERS": int(env.get("IMPORT_WORKERS", "2")),
        # uploads (and import error reports) left behind are deleted by the scheduler after this
        "UPLOAD_RETENTION_HOURS": int(env.get("UPLOAD_RETENTION_HOURS", "24")),
        # every uploaded or imported sheet (app.core.upload_guard): checked before reading,
        # then read in a child process under these limits
        "UPLOAD_MAX_ROWS": int(env.get("UPLOAD_MAX_ROWS", "3000000")),
        "READER_MAX_MEMORY_MB": int(env.get("READER_MAX_MEMORY_MB", "2048")),
        "READER_TIMEOUT_SECONDS": float(env.get("READER_TIMEOUT_SECONDS", "600")),
        # the monthly draw
        "DRAW_SAMPLE_SIZE": int(env.get("DRAW_SAMPLE_SIZE", "10")),
        "DRAW_BACKUP_SIZE": int(env.get("DRAW_BACKUP_SIZE", "10")),
        "DRAW_EXCLUSION_MONTHS": int(env.get("DRAW_EXCLUSION_MONTHS", "6")),
        "DRAW_KEY_POPULATION_MIN_SHARE": float(env["DRAW_KEY_POPULATION_MIN_SHARE"])
        if env.get("DRAW_KEY_POPULATION_MIN_SHARE")
        else None,
        "QUESTIONNAIRE_VERSION": env.get("QUESTIONNAIRE_VERSION", "v1"),
        # the scheduler (crontab fields, Asia/Shanghai)
        "DRAW_CRON": env.get("DRAW_CRON", "0 2 1 * *"),
        "CLOSE_CRON": env.get("CLOSE_CRON", "59 23 last * *"),
        "CATCH_UP_MINUTES": int(env.get("CATCH_UP_MINUTES", "30")),
        "SCHEDULER_IN_WEB": _bool(env.get("SCHEDULER_IN_WEB")),
        # retention (app/privacy): personal data of rounds closed, and of residents inactive,
        # longer ago than this is erased by the nightly purge
        "PERSONAL_DATA_RETENTION_MONTHS": int(env.get("PERSONAL_DATA_RETENTION_MONTHS", "24")),
        "PURGE_CRON": env.get("PURGE_CRON", "30 3 * * *"),
        # calling (app/calls): hours in Asia/Shanghai, attempt rules, the case lease
        "CALL_HOURS": env.get("CALL_HOURS", "08:30-12:00,14:30-20:30"),
        "CALL_MAX_ATTEMPTS": int(env.get("CALL_MAX_ATTEMPTS", "3")),
        "CALL_MIN_GAP_MINUTES": int(env.get("CALL_MIN_GAP_MINUTES", "120")),
        "CALL_LEASE_MINUTES": int(env.get("CALL_LEASE_MINUTES", "20")),
        "CALL_UNDO_SECONDS": int(env.get("CALL_UNDO_SECONDS", "15")),
        # phone searches of the case list (exact number or last four) allowed per user in 10 minutes
        "CASE_SEARCH_MAX_PER_10_MIN": int(env.get("CASE_SEARCH_MAX_PER_10_MIN", "30")),
        "QUESTIONNAIRES_DIR": env.get("QUESTIONNAIRES_DIR")
        or str(Path(__file__).resolve().parent / "questionnaires"),
        # sign-in: failures allowed per account and per address within the window, idle expiry
        "LOGIN_MAX_FAILURES_PER_ACCOUNT": int(env.get("LOGIN_MAX_FAILURES_PER_ACCOUNT", "5")),
        "LOGIN_MAX_FAILURES_PER_ADDRESS": int(env.get("LOGIN_MAX_FAILURES_PER_ADDRESS", "20")),
        "LOGIN_LOCK_MINUTES": int(env.get("LOGIN_LOCK_MINUTES", "15")),
        "SESSION_IDLE_MINUTES": int(env.get("SESSION_IDLE_MINUTES", "30")),
        # a session ends this long after its sign-in, however busy
        "SESSION_MAX_HOURS": int(env.get("SESSION_MAX_HOURS", "12")),
        # past LOGIN_MAX_FAILURES_PER_ADDRESS an address waits 1, 2, 4 … seconds, at most this
        "LOGIN_ADDRESS_MAX_DELAY_SECONDS": int(env.get("LOGIN_ADDRESS_MAX_DELAY_SECONDS", "60")),
        # behind a reverse proxy (nginx): how many proxies set X-Forwarded-For/-Proto, so the
        # sign-in throttle sees the client's address and not the proxy's
        "TRUST_PROXY_HOPS": int(env.get("TRUST_PROXY_HOPS", "0")),
        # indicators and rankings (app/reports)
        "REPORT_SATISFACTION_SCORES": env.get("REPORT_SATISFACTION_SCORES", "100,75,50,25,0"),
        "REPORT_COMPOSITE_WEIGHTS": env.get(
            "REPORT_COMPOSITE_WEIGHTS", "score:0.4,aware:0.15,knows_doctor:0.15,fulfilment:0.15,effect:0.15"
        ),
        "RANK_MIN_N": env.get("RANK_MIN_N", "team:20,institution:10,county:30"),
    }
    if overrides:
        cfg.update(overrides)
    if cfg["DRAW_SAMPLE_SIZE"] < 10:
        raise ConfigError("DRAW_SAMPLE_SIZE 不能小于10：每个机构每月至少抽取10名签约居民。")
    if cfg["DRAW_BACKUP_SIZE"] < 0 or cfg["DRAW_EXCLUSION_MONTHS"] < 0:
        raise ConfigError("DRAW_BACKUP_SIZE 和 DRAW_EXCLUSION_MONTHS 不能为负数。")
    share = cfg["DRAW_KEY_POPULATION_MIN_SHARE"]
    if share is not None and not 0 < share <= 1:
        raise ConfigError("DRAW_KEY_POPULATION_MIN_SHARE 应在0到1之间（例如0.5）。")
    if not 0 <= cfg["CALL_UNDO_SECONDS"] <= 300:
        raise ConfigError("CALL_UNDO_SECONDS 应在 0 到 300 秒之间（0 表示不提供撤销）。")
    if cfg["CALL_MAX_ATTEMPTS"] < 1 or cfg["CALL_LEASE_MINUTES"] < 1 or cfg["CALL_MIN_GAP_MINUTES"] < 0:
        raise ConfigError("CALL_MAX_ATTEMPTS、CALL_LEASE_MINUTES 至少为1，CALL_MIN_GAP_MINUTES 不能为负数。")
    if cfg["PERSONAL_DATA_RETENTION_MONTHS"] < 1:
        raise ConfigError("PERSONAL_DATA_RETENTION_MONTHS 至少为1（个人信息的保存月数）。")
    if not 1 <= cfg["SESSION_MAX_HOURS"] <= 168:
        # session rows are kept 7 days (app/auth/sessions.py): a longer lifetime would end early
        raise ConfigError("SESSION_MAX_HOURS 应在1到168之间（单位：小时）。")
    if cfg["UPLOAD_RETENTION_HOURS"] < 1:
        raise ConfigError("UPLOAD_RETENTION_HOURS 至少为1（单位：小时）。")
    if cfg["APP_ENV"] == "production":
        missing = [
            key
            for key, dev_value in (("SECRET_KEY", DEV_SECRET_KEY), ("ID_HASH_KEY", DEV_ID_HASH_KEY))
            if not cfg.get(key) or cfg[key] == dev_value or len(cfg[key]) < 16
        ]
        if missing:
            raise ConfigError(
                "生产环境必须通过环境变量设置至少16位的密钥：" + "、".join(missing)
            )
    return cfg
