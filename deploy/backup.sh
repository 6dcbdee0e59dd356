#!/usr/bin/env bash
# 备份：数据库 + 呼叫名单（SAMPLE_LISTS_DIR）+ 导入错误报告（IMPORT_REPORTS_DIR）。
#
#   deploy/backup.sh [DEST_DIR]
#
# 读取与应用相同的环境变量：DATABASE_URL（默认 instance/survey.db，与 app/config.py 一致）、
# SAMPLE_LISTS_DIR（默认 sample_lists/）、IMPORT_REPORTS_DIR（默认 instance/import_reports/）。
# 写入 DEST_DIR/survey-YYYYmmdd-HHMMSS/（目录 0700，文件 0600），附 SHA256SUMS。
#   PostgreSQL：pg_dump --format=custom --no-owner  → database.dump
#   SQLite：    在线备份（Python sqlite3 的 Connection.backup，等同 sqlite3 的 .backup）→ survey.sqlite3
# 成功后删除 DEST_DIR 中早于 KEEP_DAYS 天（默认 30；0 表示不删除）的 survey-* 备份目录。
# 恢复：deploy/restore.sh。详见 docs/deploy.md。
set -euo pipefail
umask 077

APP_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

die() {
  printf '备份失败：%s\n' "$*" >&2
  exit 1
}

usage() {
  cat <<'EOF'
用法：deploy/backup.sh [DEST_DIR]
  DEST_DIR    备份存放目录（默认 $BACKUP_DIR，未设置时为 instance/backups）
环境变量：DATABASE_URL  SAMPLE_LISTS_DIR  IMPORT_REPORTS_DIR  KEEP_DAYS（默认 30，0 = 不删除旧备份）
EOF
}

case "${1:-}" in
  -h | --help)
    usage
    exit 0
    ;;
  -*)
    usage >&2
    die "未知选项：$1"
    ;;
esac
[ "$#" -le 1 ] || {
  usage >&2
  die "参数过多。"
}

DEST_DIR="${1:-${BACKUP_DIR:-$APP_DIR/instance/backups}}"
KEEP_DAYS="${KEEP_DAYS:-30}"
[[ "$KEEP_DAYS" =~ ^[0-9]+$ ]] || die "KEEP_DAYS 应为不小于0的整数（天数），现为「$KEEP_DAYS」。"

# the Python to use, describe_database and resolve_dir
# shellcheck source=deploy/common.sh
. "$APP_DIR/deploy/common.sh"

mapfile -t DB_INFO < <(describe_database) || true
[ "${#DB_INFO[@]}" -ge 2 ] || die "无法解析 DATABASE_URL。"
DB_KIND="${DB_INFO[0]}"
SAMPLE_DIR="$(resolve_dir "${SAMPLE_LISTS_DIR:-}" "$APP_DIR/sample_lists")"
REPORTS_DIR="$(resolve_dir "${IMPORT_REPORTS_DIR:-}" "$APP_DIR/instance/import_reports")"

mkdir -p -- "$DEST_DIR" || die "无法创建备份目录 $DEST_DIR。"
DEST_DIR="$(cd "$DEST_DIR" && pwd)"
STAMP="$(date +%Y%m%d-%H%M%S)"
FINAL="$DEST_DIR/survey-$STAMP"
[ ! -e "$FINAL" ] || die "$FINAL 已存在（同一秒内运行了两次？），请稍后再试。"
WORK="$DEST_DIR/.survey-$STAMP.partial"

cleanup() {
  if [ -n "${WORK:-}" ] && [ -d "$WORK" ]; then
    rm -rf -- "$WORK"
  fi
}
trap cleanup EXIT
trap 'printf "备份失败：第 %s 行的命令出错（见上方信息），没有生成备份。\n" "$LINENO" >&2' ERR

mkdir -m 0700 -- "$WORK"

ALEMBIC="未知"
case "$DB_KIND" in
  postgresql)
    PG_URL="${DB_INFO[1]}"
    PG_PASSWORD="${DB_INFO[2]:-}"
    if [ -n "$PG_PASSWORD" ]; then export PGPASSWORD="$PG_PASSWORD"; fi
    for tool in pg_dump pg_restore psql; do
      command -v "$tool" >/dev/null 2>&1 || die "找不到 $tool，请安装与数据库服务器同一大版本的 postgresql-client。"
    done
    server_num="$(psql -X -q -A -t -v ON_ERROR_STOP=1 --dbname="$PG_URL" -c 'SHOW server_version_num')" \
      || die "无法连接 PostgreSQL（$PG_URL），请检查 DATABASE_URL、密码和数据库是否在运行。"
    server_major=$((server_num / 10000))
    dump_major="$(pg_dump --version | sed -E 's/^[^0-9]*([0-9]+).*/\1/')"
    if [ "$dump_major" -lt "$server_major" ]; then
      die "pg_dump 是 $dump_major 版，低于数据库服务器的 $server_major 版；请安装 postgresql-client-$server_major。"
    fi
    pg_dump --format=custom --no-owner --file="$WORK/database.dump" --dbname="$PG_URL" \
      || die "pg_dump 导出失败（见上方信息）。"
    pg_restore --list "$WORK/database.dump" >/dev/null || die "导出的文件无法读取（pg_restore --list 失败）。"
    ALEMBIC="$(psql -X -q -A -t --dbname="$PG_URL" -c 'SELECT version_num FROM alembic_version' 2>/dev/null || echo 未知)"
    SOURCE="$PG_URL"
    ;;
  sqlite)
    DB_FILE="${DB_INFO[1]}"
    [ -f "$DB_FILE" ] || die "SQLite 数据库文件不存在：$DB_FILE"
    if "$PY" -c 'import sqlite3' 2>/dev/null; then
      ALEMBIC="$(SRC="$DB_FILE" DST="$WORK/survey.sqlite3" "$PY" - <<'PYEOF'
import os, sqlite3, sys

src = sqlite3.connect(os.environ["SRC"], timeout=60)
dst = sqlite3.connect(os.environ["DST"])
with dst:
    src.backup(dst)  # the online backup API: a consistent copy while the services keep running
src.close()
check = dst.execute("PRAGMA integrity_check").fetchone()[0]
if check != "ok":
    sys.exit("备份副本完整性检查未通过：" + check)
try:
    print(dst.execute("SELECT version_num FROM alembic_version").fetchone()[0])
except sqlite3.Error:
    print("未知")
dst.close()
PYEOF
)" || die "SQLite 在线备份失败（见上方信息）。"
    elif command -v sqlite3 >/dev/null 2>&1; then
      sqlite3 "$DB_FILE" ".timeout 60000" ".backup '$WORK/survey.sqlite3'" || die "sqlite3 .backup 失败。"
      [ "$(sqlite3 "$WORK/survey.sqlite3" 'PRAGMA integrity_check')" = ok ] || die "备份副本完整性检查未通过。"
    else
      die "$PY 没有 sqlite3 模块，也找不到 sqlite3 命令。"
    fi
    SOURCE="sqlite:///$DB_FILE"
    ;;
  *)
    die "不支持的数据库类型：$DB_KIND"
    ;;
esac

archive() { # $1 = folder, $2 = archive name, $3 = what it is
  if [ -d "$1" ]; then
    tar -czf "$WORK/$2" -C "$1" . || die "打包$3（$1）失败。"
  else
    printf '注意：%s目录 %s 不存在，未备份%s。\n' "$3" "$1" "$3" >&2
  fi
}
archive "$SAMPLE_DIR" sample_lists.tar.gz 呼叫名单
archive "$REPORTS_DIR" import_reports.tar.gz 导入错误报告

# a fingerprint of ID_HASH_KEY (HMAC of a fixed text: says nothing about the key), so that a
# restore with another key is noticed: residents would no longer be recognised on import
KEY_CHECK=""
if [ -n "${ID_HASH_KEY:-}" ]; then
  KEY_CHECK="$("$PY" -c 'import hmac, os; print(hmac.new(os.environ["ID_HASH_KEY"].encode(), b"survey-backup-key-check", "sha256").hexdigest()[:16])')"
fi

{
  echo "kind=$DB_KIND"
  echo "created=$(date '+%Y-%m-%d %H:%M:%S %z')"
  echo "host=$(hostname)"
  echo "database=$SOURCE"
  echo "alembic_revision=$ALEMBIC"
  echo "app_commit=$(git -C "$APP_DIR" rev-parse HEAD 2>/dev/null || echo 未知)"
  echo "sample_lists_dir=$SAMPLE_DIR"
  echo "import_reports_dir=$REPORTS_DIR"
  echo "id_hash_key_check=$KEY_CHECK"
} >"$WORK/backup-info.txt"

(
  cd "$WORK"
  mapfile -t files < <(find . -maxdepth 1 -type f -printf '%f\n' | LC_ALL=C sort)
  sha256sum -- "${files[@]}" >SHA256SUMS
)
chmod 0600 "$WORK"/*
chmod 0700 "$WORK"
mv -- "$WORK" "$FINAL"
WORK=""

echo "备份完成：$FINAL"
ls -l -- "$FINAL"

# keep KEEP_DAYS days of backups; only folders this script names, never anything else
if [ "$KEEP_DAYS" -gt 0 ]; then
  find "$DEST_DIR" -mindepth 1 -maxdepth 1 -type d \
    -name 'survey-[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]-[0-9][0-9][0-9][0-9][0-9][0-9]' \
    -mmin +$((KEEP_DAYS * 1440)) -printf '删除 %f（超过 '"$KEEP_DAYS"' 天）\n' -exec rm -rf -- {} +
  # leftovers of backups that were killed half-way
  find "$DEST_DIR" -mindepth 1 -maxdepth 1 -type d -name '.survey-*.partial' -mmin +1440 -exec rm -rf -- {} +
fi
