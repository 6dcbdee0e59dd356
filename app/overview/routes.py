"""The city overview (全市概览): the administrator's landing page. Thin: reads the month,
asks app/overview/services.py for the figures and app/scheduler/heartbeat.py whether a
scheduler process is running."""
from __future__ import annotations

from flask import current_app, flash, render_template, request
from flask_login import login_required

from app.auth.scope import roles_required
from app.core.clock import clock_now, current_month, shift_month
from app.draws.services import DrawError, parse_month
from app.extensions import db
from app.overview import bp
from app.overview.services import city_overview
from app.scheduler.heartbeat import scheduler_state


@bp.route("/")
@login_required
@roles_required("admin")
def city():
    now = clock_now()
    this_month = current_month(now)
    month = this_month
    if request.args.get("month"):
        try:
            month = parse_month(request.args["month"])
        except DrawError as exc:
            flash(f"{exc}，已显示本月。", "error")
    overview = city_overview(db.session, month, sample_size=current_app.config["DRAW_SAMPLE_SIZE"], now=now)
    return render_template(
        "overview/city.html", o=overview, month=month, this_month=this_month,
        previous=shift_month(month, -1), following=shift_month(month, 1) if month <= this_month else None,
        scheduler=scheduler_state(db.session, now),
    )
