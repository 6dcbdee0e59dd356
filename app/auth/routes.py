from urllib.parse import urlsplit

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required, login_user, logout_user
from sqlalchemy import select

from app.auth import bp
from app.auth.forms import LoginForm, LogoutForm
from app.extensions import db, login_manager
from app.models import User, utcnow

login_manager.login_view = "auth.index"
login_manager.login_message = "请先登录。"
login_manager.session_protection = "strong"


@login_manager.user_loader
def load_user(user_id: str):
    return db.session.get(User, int(user_id)) if user_id.isdigit() else None


@bp.app_context_processor
def inject_logout_form():
    return {"logout_form": LogoutForm()}


def _home_url() -> str:
    return url_for("org.counties")


def _safe_next(target: str | None) -> str | None:
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target


@bp.route("/", methods=["GET", "POST"])
def index():
    """The front page: sign-in for visitors, the user's home otherwise."""
    if current_user.is_authenticated:
        return redirect(_home_url())
    form = LoginForm()
    if form.validate_on_submit():
        user = db.session.scalar(select(User).where(User.username == form.username.data.strip()))
        if user is not None and user.is_enabled and user.check_password(form.password.data):
            login_user(user)
            user.last_login_at = utcnow()
            db.session.commit()
            return redirect(_safe_next(request.args.get("next")) or _home_url())
        flash("用户名或密码错误。", "error")
    return render_template("auth/login.html", form=form)


@bp.route("/logout", methods=["POST"])
@login_required
def logout():
    form = LogoutForm()
    if form.validate_on_submit():
        logout_user()
        flash("您已退出登录。", "info")
    return redirect(url_for("auth.index"))
