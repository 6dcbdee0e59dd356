from flask import current_app, render_template
from flask_login import login_required
from sqlalchemy import select

from app.auth.scope import roles_required
from app.core.clock import clock_now, current_month
from app.extensions import db
from app.models import SchedulerRun
from app.scheduler import bp
from app.scheduler.heartbeat import scheduler_state
from app.scheduler.jobs import JOB_LABELS, next_runs, pending_counties


@bp.route("/")
@login_required
@roles_required("admin", "supervisor")
def status():
    now = clock_now()
    month = current_month(now)
    page = db.paginate(select(SchedulerRun).order_by(SchedulerRun.started_at.desc(), SchedulerRun.id.desc()),
                       per_page=50, error_out=False)
    return render_template(
        "scheduler/status.html", upcoming=next_runs(current_app.config, now), page=page, labels=JOB_LABELS,
        month=month, pending=pending_counties(month), in_web=current_app.config["SCHEDULER_IN_WEB"],
        state=scheduler_state(db.session, now),
    )
