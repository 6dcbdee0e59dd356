"""The audit log's pages: /audit (the list, filtered and paginated) and /audit/export.xlsx.
Admins see every row, supervisors their county's, callers get 403 (app/audit/log.py)."""
from __future__ import annotations

import io
import tempfile
from pathlib import Path

from flask import current_app, flash, render_template, request, send_file
from flask_login import current_user, login_required
from sqlalchemy import select

from app.audit import bp
from app.audit.log import PER_PAGE, AuditFilters, action_choices, export_frame, log_query, rows_of
from app.auth.scope import roles_required
from app.core.clock import clock_now, to_local
from app.core.spreadsheets import write_xlsx
from app.core.transactions import transaction
from app.extensions import db
from app.models import County, audit

STAFF = ("admin", "supervisor")


def _filters(*, say: bool = True) -> AuditFilters:
    f = AuditFilters.from_args(request.args, current_user)
    for message in f.errors if say else ():
        flash(message, "error")
    return f


@bp.route("/")
@login_required
@roles_required(*STAFF)
def log():
    f = _filters()
    page = db.paginate(log_query(f, current_user), per_page=PER_PAGE, error_out=False)
    counties = db.session.scalars(select(County).order_by(County.code)).all() if current_user.is_admin else []
    return render_template("audit/log.html", page=page, rows=rows_of(db.session, list(page.items)), f=f, counties=counties,
                           actions=action_choices(f.action))


@bp.route("/export.xlsx")
@login_required
@roles_required(*STAFF)
def export():
    """The filtered rows as a workbook; the export itself is logged before the file is sent.
    Filters that cannot be read are dropped, as on the page (which said why)."""
    f = _filters(say=False)
    tz_name = current_app.config["DISPLAY_TIMEZONE"]
    frame, more = export_frame(db.session, f, current_user, tz_name)
    made = to_local(clock_now(), tz_name, "%Y-%m-%d %H:%M")
    title = f"审计日志 · 导出时间 {made} · {len(frame)} 条" + ("（仅最新的部分，请缩小筛选范围）" if more else "")
    with tempfile.TemporaryDirectory() as folder:
        path = write_xlsx(Path(folder) / "audit.xlsx", {"审计日志": frame}, {"详情": 60, "对象": 30, "哈希": 66},
                          titles={"审计日志": title})
        data = path.read_bytes()
    county_id = int(f.county) if f.county.isdigit() else None
    with transaction(db.session):
        audit(db.session, "export.audit_log", current_user, detail={"filters": f.args(), "rows": len(frame)},
              county_id=county_id)
    name = f"审计日志-{to_local(clock_now(), tz_name, '%Y%m%d-%H%M')}.xlsx"
    return send_file(io.BytesIO(data), as_attachment=True, download_name=name,
                     mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
