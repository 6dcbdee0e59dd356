#!/usr/bin/env bash
# 恢复 deploy/backup.sh 做的备份：数据库、呼叫名单、导入错误报告。
#
#   deploy/restore.sh [--force] [--no-service-check] BACKUP_DIR
#
# 先停止服务：systemctl stop survey-web survey-scheduler（服务在运行时拒绝恢复，
# 除非加 --no-service-check：只用于恢复到服务不使用的数据库，例如恢复演练）。
# 目标由与应用相同的环境变量决定：DATABASE_URL、SAMPLE_LISTS_DIR、IMPORT_REPORTS_DIR。
#   1. 按 SHA256SUMS 校验备份中的每个文件，不符则拒绝；
#   2. 目标数据库已有数据时拒绝，除非加 --force（会覆盖现有数据）；
#   3. PostgreSQL：pg_restore --no-owner --clean --if-exists，单一事务（失败则数据库不变）；
#      SQLite：把备份文件复制到位（原文件先另存为 *.before-restore-时间）；
#   4. 解包呼叫名单和导入错误报告到各自目录（同名文件被覆盖，其余文件保留）。
# 详见 docs/deploy.md。
set -euo pipefail
umask 077

APP_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

die() {
  printf '恢复失败：%s\n' "$*" >&2
  exit 1
}

usage() {
  cat <<'EOF'
用法：deploy/restore.sh [--force] [--no-service-check] BACKUP_DIR
  BACKUP_DIR          backup.sh 生成的 survey-YYYYmmdd-HHMMSS 目录
  --force             目标数据库已有数据（或 ID_HASH_KEY 与备份时不同）时仍然恢复，覆盖现有数据
  --no-service-check  survey-web / survey-scheduler 在运行也继续：只在恢复到服务不使用的数据库时用（恢复演练）
环境变量：DATABASE_URL  SAMPLE_LISTS_DIR  IMPORT_REPORTS_DIR  ID_HASH_KEY
EOF
}

FORCE=0
CHECK_SERVICES=1
BACKUP_DIR=""
for arg in "$@"; do
  case "$arg" in
    --force) FORCE=1 ;;
    --no-service-check) CHECK_SERVICES=0 ;;
    -h | --help)
      usage
      exit 0
      ;;
    -*)
      usage >&2
      die "未知选项：$arg"
      ;;
    *)
      [ -z "$BACKUP_DIR" ] || die "只能指定一个备份目录。"
      BACKUP_DIR="$arg"
      ;;
  esac
done
[ -n "$BACKUP_DIR" ] || {
  usage >&2
  die "请指定备份目录。"
}
[ -d "$BACKUP_DIR" ] || die "备份目录不存在：$BACKUP_DIR"
BACKUP_DIR="$(cd "$BACKUP_DIR" && pwd)"

# the Python to use, describe_database and resolve_dir
# shellcheck source=deploy/common.sh
. "$APP_DIR/deploy/common.sh"

# --- 1. the checksums: every file listed, every listed file unchanged -------------------
[ -f "$BACKUP_DIR/SHA256SUMS" ] || die "$BACKUP_DIR 中没有 SHA256SUMS，不是完整的备份。"
(cd "$BACKUP_DIR" && sha256sum --check --strict --quiet SHA256SUMS) \
  || die "校验失败：备份文件已损坏或被改动（SHA256SUMS 不符），未做任何恢复。请换一份备份。"
while IFS= read -r -d '' file; do
  name="${file##*/}"
  awk -v n="$name" '$2 == n || $2 == "*" n { found = 1 } END { exit !found }' "$BACKUP_DIR/SHA256SUMS" \
    || die "校验失败：$name 不在 SHA256SUMS 中，备份不完整或被改动。"
done < <(find "$BACKUP_DIR" -mindepth 1 -maxdepth 1 -type f ! -name SHA256SUMS -print0)

if [ -f "$BACKUP_DIR/database.dump" ]; then
  BACKUP_KIND=postgresql
elif [ -f "$BACKUP_DIR/survey.sqlite3" ]; then
  BACKUP_KIND=sqlite
else
  die "备份中没有数据库文件（database.dump 或 survey.sqlite3）。"
fi
echo "备份校验通过：$BACKUP_DIR（$BACKUP_KIND）"

# --- the target: same rules as the application and backup.sh -----------------------------

mapfile -t DB_INFO < <(describe_database) || true
[ "${#DB_INFO[@]}" -ge 2 ] || die "无法解析 DATABASE_URL。"
DB_KIND="${DB_INFO[0]}"
[ "$DB_KIND" = "$BACKUP_KIND" ] \
  || die "这是 $BACKUP_KIND 的备份，而 DATABASE_URL 指向 $DB_KIND 数据库；不能跨数据库类型恢复。"
SAMPLE_DIR="$(resolve_dir "${SAMPLE_LISTS_DIR:-}" "$APP_DIR/sample_lists")"
REPORTS_DIR="$(resolve_dir "${IMPORT_REPORTS_DIR:-}" "$APP_DIR/instance/import_reports")"

if [ "$CHECK_SERVICES" -eq 1 ] && command -v systemctl >/dev/null 2>&1 \
  && systemctl is-active --quiet survey-web.service survey-scheduler.service 2>/dev/null; then
  die "服务仍在运行。请先执行：systemctl stop survey-web survey-scheduler（恢复到服务不使用的演练库时可加 --no-service-check）"
fi

# --- ID_HASH_KEY: the same key as when the backup was made ------------------------------
KEY_CHECK="$(sed -n 's/^id_hash_key_check=//p' "$BACKUP_DIR/backup-info.txt" 2>/dev/null || true)"
if [ -n "$KEY_CHECK" ] && [ -n "${ID_HASH_KEY:-}" ]; then
  NOW_CHECK="$("$PY" -c 'import hmac, os; print(hmac.new(os.environ["ID_HASH_KEY"].encode(), b"survey-backup-key-check", "sha256").hexdigest()[:16])')"
  if [ "$NOW_CHECK" != "$KEY_CHECK" ]; then
    if [ "$FORCE" -eq 1 ]; then
      echo "警告：当前 ID_HASH_KEY 与备份时不同（--force，继续）。" >&2
    else
      die "当前 ID_HASH_KEY 与备份时不同：恢复后再导入名册，同一居民将不被识别。请在 /etc/survey/survey.env 中使用备份时的 ID_HASH_KEY；确需如此恢复时加 --force。"
    fi
  fi
elif [ -n "$KEY_CHECK" ]; then
  echo "注意：未设置 ID_HASH_KEY，无法核对密钥。服务必须使用备份时的 ID_HASH_KEY。" >&2
fi

is_root() { [ "$(id -u)" -eq 0 ]; }

# --- 2. the target must be empty unless --force ------------------------------------------
case "$DB_KIND" in
  postgresql)
    PG_URL="${DB_INFO[1]}"
    PG_PASSWORD="${DB_INFO[2]:-}"
    if [ -n "$PG_PASSWORD" ]; then export PGPASSWORD="$PG_PASSWORD"; fi
    for tool in pg_restore psql; do
      command -v "$tool" >/dev/null 2>&1 || die "找不到 $tool，请安装与数据库服务器同一大版本的 postgresql-client。"
    done
    # tables that hold at least one row (alembic_version and the audit chain's head, which a
    # fresh schema holds, do not count: audit rows would be in audit_log)
    NONEMPTY="$(psql -X -q -A -t -v ON_ERROR_STOP=1 --dbname="$PG_URL" -c "
      SELECT count(*) FROM pg_tables t
      WHERE t.schemaname NOT IN ('pg_catalog', 'information_schema')
        AND t.tablename NOT IN ('alembic_version', 'audit_chain_head')
        AND (xpath('count(/table/row)', query_to_xml(
              format('SELECT 1 AS c FROM %I.%I LIMIT 1', t.schemaname, t.tablename),
              false, false, '')))[1]::text::int > 0")" \
      || die "无法连接或查询目标数据库（$PG_URL）。请先建好空数据库（见 docs/deploy.md），并检查 DATABASE_URL。"
    ;;
  sqlite)
    TARGET="${DB_INFO[1]}"
    NONEMPTY="$(TARGET="$TARGET" "$PY" - <<'PYEOF'
import os, sqlite3, sys

path = os.environ["TARGET"]
if not os.path.exists(path) or os.path.getsize(path) == 0:
    print(0)
    sys.exit()
try:
    con = sqlite3.connect(path, timeout=30)
    tables = [r[0] for r in con.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT IN ('alembic_version', 'audit_chain_head')")]
    print(sum(1 for t in tables if con.execute(f'SELECT 1 FROM "{t}" LIMIT 1').fetchone()))
    con.close()
except sqlite3.Error as exc:
    print(f"目标文件 {path} 不是可读的 SQLite 数据库（{exc}）", file=sys.stderr)
    print(-1)
PYEOF
)"
    ;;
esac
if [ "$NONEMPTY" != 0 ]; then
  if [ "$FORCE" -eq 1 ]; then
    echo "警告：目标数据库已有数据，按 --force 覆盖。" >&2
  elif [ "$NONEMPTY" = -1 ]; then
    die "目标数据库文件无法读取；确认要用备份替换它时加 --force。"
  else
    die "目标数据库不是空的（$NONEMPTY 张表有数据），拒绝覆盖。确认要用备份替换现有数据时加 --force。"
  fi
fi

# --- 3. the database ----------------------------------------------------------------------
STAMP="$(date +%Y%m%d-%H%M%S)"
case "$DB_KIND" in
  postgresql)
    echo "正在恢复 PostgreSQL 数据库 $PG_URL ……"
    pg_restore --no-owner --clean --if-exists --single-transaction --exit-on-error \
      --dbname="$PG_URL" "$BACKUP_DIR/database.dump" \
      || die "pg_restore 失败（见上方信息）；整个恢复在一个事务中，数据库保持原样。"
    psql -X -q --dbname="$PG_URL" -c 'ANALYZE' >/dev/null || echo "注意：ANALYZE 失败，可稍后手动执行。" >&2
    ;;
  sqlite)
    echo "正在恢复 SQLite 数据库 $TARGET ……"
    TARGET_DIR="$(dirname -- "$TARGET")"
    mkdir -p -- "$TARGET_DIR"
    if [ -s "$TARGET" ]; then
      KEPT="$TARGET.before-restore-$STAMP"
      # the online backup takes what is still in the -wal file too
      SRC="$TARGET" DST="$KEPT" "$PY" -c '
import os, sqlite3
src = sqlite3.connect(os.environ["SRC"], timeout=30)
dst = sqlite3.connect(os.environ["DST"])
with dst:
    src.backup(dst)
' 2>/dev/null || cp -p -- "$TARGET" "$KEPT"
      echo "原数据库已另存为 $KEPT"
    fi
    TMP="$TARGET.restoring-$$"
    cp -- "$BACKUP_DIR/survey.sqlite3" "$TMP"
    TMP="$TMP" "$PY" -c '
import os, sqlite3, sys
con = sqlite3.connect(os.environ["TMP"])
check = con.execute("PRAGMA integrity_check").fetchone()[0]
sys.exit(None if check == "ok" else "完整性检查未通过：" + check)
' || {
      rm -f -- "$TMP"
      die "备份中的 SQLite 文件无法使用。"
    }
    rm -f -- "$TARGET-wal" "$TARGET-shm" "$TMP-wal" "$TMP-shm" "$TMP-journal"
    chmod 0600 "$TMP"
    mv -f -- "$TMP" "$TARGET"
    if is_root; then
      chown --reference="$TARGET_DIR" -- "$TARGET" ${KEPT:+"$KEPT"}
    fi
    ;;
esac
echo "数据库已恢复。"

# --- 4. call lists and import error reports ---------------------------------------------
restore_archive() { # $1 = archive, $2 = folder, $3 = what it is
  local ref
  if [ ! -f "$BACKUP_DIR/$1" ]; then
    echo "备份中没有$3，跳过。"
    return 0
  fi
  ref="$2"
  [ -d "$ref" ] || ref="$(dirname -- "$2")"
  mkdir -p -- "$2"
  tar -xzf "$BACKUP_DIR/$1" -C "$2" --no-same-owner || die "解包$3到 $2 失败。"
  if is_root && [ -d "$ref" ]; then
    chown -R --reference="$ref" -- "$2"
  fi
  echo "$3已恢复到 $2"
}
restore_archive sample_lists.tar.gz "$SAMPLE_DIR" 呼叫名单
restore_archive import_reports.tar.gz "$REPORTS_DIR" 导入错误报告

echo "恢复完成。如果现在的代码比备份时新，先运行 flask --app wsgi db upgrade，再启动服务：systemctl start survey-web survey-scheduler"
