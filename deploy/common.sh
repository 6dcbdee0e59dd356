# shellcheck shell=bash
# Shared by backup.sh and restore.sh (sourced, not run): the Python to use and where the
# database and folders are, by the same rules as the application. Needs APP_DIR and die().

# the venv's Python first (it is there wherever the application is), else the system's
if [ -x "$APP_DIR/.venv/bin/python" ]; then
  PY="$APP_DIR/.venv/bin/python"
elif command -v python3 >/dev/null 2>&1; then
  PY="$(command -v python3)"
else
  die "找不到 Python（$APP_DIR/.venv/bin/python 或 python3）。"
fi

# Where the database is. Relative paths are relative to the current directory, as in the
# application (SQLAlchemy resolves sqlite:///relative.db against the working directory; the
# services run in /opt/survey). Prints: kind, then the SQLite file, or the libpq URL without
# its password and the password. The URL is read from the environment, never from argv.
describe_database() {
  DATABASE_URL="${DATABASE_URL:-sqlite:///$APP_DIR/instance/survey.db}" "$PY" - <<'PYEOF'
import os, sys
from urllib.parse import unquote, urlsplit

url = os.environ["DATABASE_URL"].strip()
scheme, sep, rest = url.partition("://")
kind = scheme.split("+", 1)[0].lower()
if not sep:
    sys.exit("DATABASE_URL 格式不对：" + url.split("@")[-1])
if kind == "sqlite":
    path = rest[1:] if rest.startswith("/") else rest
    path = path.split("?", 1)[0]
    if path in ("", ":memory:"):
        sys.exit("DATABASE_URL 指向内存数据库，无法备份或恢复。")
    print("sqlite")
    print(os.path.abspath(path))
elif kind in ("postgresql", "postgres"):
    parts = urlsplit("postgresql://" + rest)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    netloc = (user + "@" if user else "") + hostport
    libpq = "postgresql://" + netloc + parts.path + ("?" + parts.query if parts.query else "")
    print("postgresql")
    print(libpq)
    print(unquote(password))
else:
    sys.exit("不支持的数据库类型：" + scheme + "（只支持 PostgreSQL 和 SQLite）")
PYEOF
}

resolve_dir() { # $1 = value of the variable (may be empty), $2 = default
  local value="${1:-$2}"
  case "$value" in
    /*) printf '%s\n' "$value" ;;
    *) printf '%s/%s\n' "$PWD" "$value" ;;
  esac
}
