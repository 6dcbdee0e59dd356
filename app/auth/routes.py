import hmac
from datetime import timedelta
from urllib.parse import urlsplit

from flask import current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user
from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash

from app.auth import bp
from app.auth.forms import LoginForm, LogoutForm
from app.auth.throttle import KEEP_FOR, ThrottleSettings, is_throttled, normalize_username, record_attempt
from app.extensions import db, login_manager
from app.locks import begin_write
from app.models import User, utcnow

login_manager.login_view = "auth.index"
login_manager.login_message = "请先登录。"
login_manager.session_protection = "strong"

FAILED_MESSAGE = "用户名或密码错误。"
_dummy_hash: str | None = None


@bp.record_once
def _idle_expiry(state) -> None:
    # Sessions are permanent (set at sign-in) and Flask re-signs the cookie on every request, so a
    # cookie not refreshed for SESSION_IDLE_MINUTES is refused: inactivity signs the user out.
    app = state.app
    app.permanent_session_lifetime = timedelta(minutes=int(app.config["SESSION_IDLE_MINUTES"]))
    app.config["SESSION_REFRESH_EACH_REQUEST"] = True


@login_manager.user_loader
def load_user(session_id: str):
    # "<user id>.<mark of the password>": a disabled account, or one whose password changed
    # since the session was opened, loses its open sessions at once
    user_id, _, mark = session_id.partition(".")
    user = db.session.get(User, int(user_id)) if user_id.isdigit() and mark else None
    if user is None or not user.is_enabled or not hmac.compare_digest(user.session_mark, mark):
        return None
    return user


@bp.app_context_processor
def inject_logout_form():
    return {"logout_form": LogoutForm()}


def _home_url() -> str:
    if current_user.is_authenticated and current_user.role == "caller" and "calls.home" in current_app.view_functions:
        return url_for("calls.home")
    return url_for("org.counties")


def _safe_next(target: str | None) -> str | None:
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target


def _password_matches(user: User | None, password: str) -> bool:
    """Check the password; for an unknown name check against a dummy hash, so both take as long."""
    global _dummy_hash
    if user is None:
        if _dummy_hash is None:
            _dummy_hash = generate_password_hash("not-a-real-password")
        check_password_hash(_dummy_hash, password)
        return False
    return user.check_password(password)


@bp.route("/", methods=["GET", "POST"])
def index():
    """The front page: sign-in for visitors, the user's home otherwise."""
    if current_user.is_authenticated:
        return redirect(_home_url())
    form = LoginForm()
    if form.validate_on_submit():
        username = normalize_username(form.username.data)
        ip = request.remote_addr or "unknown"
        now = utcnow()
        settings = ThrottleSettings.from_config(current_app.config)
        keep = max(KEEP_FOR, settings.window)
        if is_throttled(db.session, username, ip, now=now, settings=settings):
            # the password is not even checked: a correct one does not get in either
            begin_write(db.session)
            record_attempt(db.session, username, ip, False, now=now, keep=keep)
            db.session.commit()
            flash(f"登录失败次数过多，请{settings.lock_minutes}分钟后再试。", "error")
            return render_template("auth/login.html", form=form), 429
        user = db.session.scalar(select(User).where(User.username == username))
        ok = _password_matches(user, form.password.data) and user.is_enabled
        # the write lock only now, after the slow password hash (SQLite: one writer at a time)
        begin_write(db.session)
        record_attempt(db.session, username, ip, ok, now=now, keep=keep)
        if ok:
            session.permanent = True
            login_user(user)
            user.last_login_at = now
            db.session.commit()
            return redirect(_safe_next(request.args.get("next")) or _home_url())
        db.session.commit()
        flash(FAILED_MESSAGE, "error")
    return render_template("auth/login.html", form=form)


@bp.route("/logout", methods=["POST"])
@login_required
def logout():
    form = LogoutForm()
    if form.validate_on_submit():
        logout_user()
        flash("您已退出登录。", "info")
    return redirect(url_for("auth.index"))
