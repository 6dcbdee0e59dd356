import hmac
from datetime import timedelta
from urllib.parse import urlsplit

from flask import current_app, flash, g, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user
from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash

from app.core.forms import has_control_characters
from app.core.transactions import transaction
from app.auth import bp
from app.auth.forms import ChangePasswordForm, LoginForm, LogoutForm, SignOutEverywhereForm
from app.auth.passwords import MIN_PASSWORD_LENGTH
from app.auth.services import UserError, WrongPasswordError, change_own_password, login_key
from app.auth.sessions import SessionSettings, find_session, needs_touch, open_session, revoke, revoke_all, touch
from app.auth.throttle import KEEP_FOR, Admission, ThrottleSettings, admit, normalize_username, settle
from app.extensions import db, login_manager
from app.models import User, audit
from app.core.clock import utcnow

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


SESSION_TOKEN = "_sid"  # the cookie's key for the server-side session's token
_TOUCH = "auth_session_touch"  # g: the id of a session whose last_seen_at is a minute old


@login_manager.user_loader
def load_user(session_id: str):
    # "<user id>.<mark of the password>" and the token of a server-side session still open: a
    # revoked, expired or foreign session, a disabled account, or one whose password changed
    # since the session was opened is refused (one indexed query: app/auth/sessions.py)
    user_id, _, mark = session_id.partition(".")
    now = utcnow()
    found = find_session(db.session, session.get(SESSION_TOKEN), now=now,
                         settings=SessionSettings.from_config(current_app.config)) if mark else None
    if found is None:
        return None
    user, record = found
    if str(user.id) != user_id or not hmac.compare_digest(user.session_mark, mark):
        return None
    if needs_touch(record, now):
        g.setdefault(_TOUCH, record.id)
    return user


def _sign_in(user: User, now) -> None:
    """Open a session for ``user`` (inside the caller's write transaction)."""
    session.permanent = True
    login_user(user)
    session[SESSION_TOKEN] = open_session(db.session, user, now=now, ip=request.remote_addr,
                                          user_agent=request.headers.get("User-Agent"))


def _sign_out() -> None:
    logout_user()
    session.pop(SESSION_TOKEN, None)


def _printable(text: str | None, limit: int = 50) -> str:
    return "".join(ch for ch in (text or "") if ch.isprintable())[:limit]


@bp.app_context_processor
def inject_logout_form():
    return {"logout_form": LogoutForm()}


def _home_url() -> str:
    """Where each role's work is: callers their queue (拨打任务), supervisors their county's
    progress board (调查进度), the city administrator the city overview (全市概览)."""
    role = current_user.role if current_user.is_authenticated else None
    if role == "caller":
        return url_for("calls.home")
    if role == "supervisor":
        return url_for("reports.board")
    if role == "admin":
        return url_for("overview.city")
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
        # throttled and looked up by the case-folded name: "Wang" and "WANG" are one account,
        # and varying the case does not buy an attacker more tries
        username = normalize_username(login_key(form.username.data))
        ip = request.remote_addr or "unknown"
        now = utcnow()
        settings = ThrottleSettings.from_config(current_app.config)
        keep = max(KEEP_FOR, settings.window)
        # counted (as a failure) before the password is checked, under a lock per name and
        # address: of many parallel attempts only as many as the limit are checked
        with transaction(db.session, write=True):
            admission = admit(db.session, username, ip, now=now, settings=settings, keep=keep)
        if not admission.allowed:
            # the password is not even checked: a correct one does not get in either
            flash(_refusal(admission, settings), "error")
            return render_template("auth/login.html", form=form), 429
        user = db.session.scalar(select(User).where(User.username_key == username))
        # no password holds a control character (the rules refuse them), while HMAC would take
        # "secret\0" for "secret": such a password is wrong whatever the hash says
        ok = (_password_matches(user, form.password.data) and user.is_enabled
              and not has_control_characters(form.password.data))
        # the write lock only now, after the slow password hash (SQLite: one writer at a time)
        with transaction(db.session, write=True):
            settle(db.session, admission.attempt_id, ok)
            if ok:
                user = db.session.get(User, user.id)
                _sign_in(user, now)
                user.last_login_at = now
                audit(db.session, "login", user, target=f"user:{user.id} {user.username}", detail={"ip": ip})
            else:
                # the name as typed (printable, cut), never the password
                audit(db.session, "login_failed", _printable(form.username.data) or "-", detail={"ip": ip})
        if ok:
            if user.must_change_password:
                return redirect(url_for("auth.change_password"))
            return redirect(_safe_next(request.args.get("next")) or _home_url())
        flash(FAILED_MESSAGE, "error")
    return render_template("auth/login.html", form=form)


@bp.route("/logout", methods=["POST"])
@login_required
def logout():
    form = LogoutForm()
    if form.validate_on_submit():
        user = current_user._get_current_object()
        with transaction(db.session, write=True):
            revoke(db.session, session.get(SESSION_TOKEN), now=utcnow())
            audit(db.session, "logout", user, target=f"user:{user.id} {user.username}")
        _sign_out()
        flash("您已退出登录。", "info")
    return redirect(url_for("auth.index"))


@bp.route("/account/sessions/revoke", methods=["POST"])
@login_required
def sign_out_everywhere():
    """退出所有设备: every session of the account ends, this one included."""
    form = SignOutEverywhereForm()
    if not form.validate_on_submit():
        flash("表单已过期，请重试。", "error")
        return redirect(url_for("auth.change_password"))
    user = current_user._get_current_object()
    with transaction(db.session, write=True):
        count = revoke_all(db.session, user, now=utcnow())
        audit(db.session, "logout_all", user, target=f"user:{user.id} {user.username}", detail={"sessions": count})
    _sign_out()
    flash("已退出所有设备上的登录。", "info")
    return redirect(url_for("auth.index"))


def _refusal(admission: Admission, settings: ThrottleSettings) -> str:
    if admission.refused == "address":
        return f"登录尝试过于频繁，请{admission.wait_seconds}秒后再试。"
    return f"登录失败次数过多，请{settings.lock_minutes}分钟后再试。"


# What a user with a temporary password may still reach: the change page, signing out, and
# the style sheets and scripts those pages need.
_OPEN_WHILE_TEMPORARY = {"auth.change_password", "auth.logout", "static"}


@bp.before_app_request
def _session_seen():
    """Write a session's last_seen_at when it is a minute old (the check itself is in
    load_user): at the start of the request, before the view's own transaction."""
    endpoint = request.endpoint or ""
    if endpoint == "static" or endpoint.endswith(".static"):
        return None
    if current_user.is_authenticated and g.get(_TOUCH) is not None:
        with transaction(db.session, write=True):
            touch(db.session, g.pop(_TOUCH), now=utcnow())
    return None


@bp.before_app_request
def _require_own_password():
    """An account created or reset by an administrator has a temporary password: until its
    owner chooses one, every other request — pages, JSON, exports, downloads, POSTs of any
    blueprint, unknown URLs — is sent to the change page, and nothing else runs."""
    endpoint = request.endpoint or ""
    if endpoint in _OPEN_WHILE_TEMPORARY or endpoint.endswith(".static"):
        return None  # before current_user: a style sheet needs no database query
    if current_user.is_authenticated and current_user.must_change_password:
        return redirect(url_for("auth.change_password"))
    return None


def _password_page(form: ChangePasswordForm, code: int = 200):
    return render_template("auth/password.html", form=form, forced=current_user.must_change_password,
                           min_length=MIN_PASSWORD_LENGTH, everywhere_form=SignOutEverywhereForm()), code


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def change_password():
    """Every user's own password change; the forced one after an administrator set a temporary
    password. This session stays signed in, every other session of the account ends."""
    form = ChangePasswordForm()
    if request.method == "GET" or not form.validate_on_submit():
        return _password_page(form, 400 if request.method == "POST" else 200)
    user = current_user._get_current_object()
    key = normalize_username(login_key(user.username))
    ip = request.remote_addr or "unknown"
    now = utcnow()
    settings = ThrottleSettings.from_config(current_app.config)
    # guessing the current password from an open session counts like guessing at sign-in
    with transaction(db.session, write=True):
        admission = admit(db.session, key, ip, now=now, settings=settings, keep=max(KEEP_FOR, settings.window))
    if not admission.allowed:
        flash(f"密码错误次数过多，请{settings.lock_minutes}分钟后再试。" if admission.refused == "account"
              else _refusal(admission, settings), "error")
        return _password_page(form, 429)
    user = db.session.get(User, user.id)
    try:
        with transaction(db.session, write=True):
            change_own_password(db.session, user, current=form.current.data, new=form.password.data, now=now,
                                keep_token=session.get(SESSION_TOKEN))
    except UserError as exc:
        if not isinstance(exc, WrongPasswordError):  # the current password was right
            with transaction(db.session, write=True):
                settle(db.session, admission.attempt_id, True)
        flash(str(exc), "error")
        return _password_page(form, 400)
    with transaction(db.session, write=True):
        settle(db.session, admission.attempt_id, True)
    login_user(user)  # the session mark follows the new password: this session goes on
    flash("密码已修改。其他设备上的登录已全部退出。", "success")
    return redirect(_home_url())
