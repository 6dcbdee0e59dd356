"""Admin pages: user management (list, create, edit, password reset, unlock, bulk import)."""
import io
from pathlib import Path

from flask import abort, current_app, flash, redirect, render_template, request, send_file, url_for
from flask_login import current_user, login_required
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.core.ids import as_id
from app.admin import bp
from app.admin.forms import ActionForm, ResetPasswordForm, UserCreateForm, UserEditForm, UserImportForm
from app.auth.importer import (
    ImportStore,
    UserImportFailed,
    check_user_sheet,
    create_accounts,
    preview_state,
    write_passwords_file,
)
from app.auth.scope import roles_required
from app.auth.services import (
    UserError,
    create_user,
    login_key,
    reset_password,
    taken_message,
    unlock_user,
    update_user,
)
from app.auth.throttle import ThrottleSettings, locked_accounts, normalize_username
from app.extensions import db
from app.models import audit, ROLES, County, User
from app.core.transactions import transaction
from app.core.clock import utcnow
from app.core.masking import mask_phone
from app.core.sheets import SUPPORTED_SUFFIXES
from app.core.upload_guard import ReadLimits
from app.core.spreadsheets import write_error_report
from app.core.storage import save_private


def _counties() -> list[County]:
    return db.session.scalars(select(County).order_by(County.code)).all()


def _form_page(form, user: User | None, error: str | None = None):
    if error:
        flash(error, "error")
    status = 400 if request.method == "POST" else 200
    return render_template("admin/user_form.html", form=form, user=user, roles=ROLES), status


def _actor() -> User:
    return current_user._get_current_object()


def _throttle() -> ThrottleSettings:
    return ThrottleSettings.from_config(current_app.config)


def _lock_key(user: User) -> str:
    return normalize_username(login_key(user.username))


@bp.route("/users")
@login_required
@roles_required("admin")
def users():
    counties = _counties()
    county_arg = request.args.get("county", "")
    role_arg = request.args.get("role", "")
    stmt = select(User).outerjoin(County, County.id == User.county_id)
    if county_arg == "none":
        stmt = stmt.where(User.county_id.is_(None))
    elif as_id(county_arg) is not None:
        stmt = stmt.where(User.county_id == as_id(county_arg))
    else:
        county_arg = ""
    if role_arg in ROLES:
        stmt = stmt.where(User.role == role_arg)
    else:
        role_arg = ""
    stmt = stmt.order_by(County.code.is_not(None), County.code, User.username)
    page = db.paginate(stmt, per_page=50, error_out=False)
    keys = {u.id: _lock_key(u) for u in page.items}
    locked = locked_accounts(db.session, list(keys.values()), now=utcnow(), settings=_throttle())
    return render_template(
        "admin/users.html", page=page, counties=counties, roles=ROLES, county_arg=county_arg, role_arg=role_arg,
        locked={uid for uid, key in keys.items() if key in locked}, action=ActionForm(), mask_phone=mask_phone,
    )


@bp.route("/users/new", methods=["GET", "POST"])
@login_required
@roles_required("admin")
def user_new():
    form = UserCreateForm()
    form.set_county_choices(_counties())
    if request.method == "GET":
        form.role.data = "caller"
    if not form.validate_on_submit():
        return _form_page(form, None)
    try:
        with transaction(db.session):
            user = create_user(
                db.session, form.username.data, form.role.data, form.password.data,
                county_id=form.county_id, real_name=form.real_name.data, phone=form.phone.data, actor=_actor(),
            )
    except UserError as exc:
        return _form_page(form, None, str(exc))
    except IntegrityError:  # the same name created at the same moment by someone else
        return _form_page(form, None, taken_message(form.username.data))
    flash(f"已创建用户 {user.username}（{user.real_name}，{user.role_label}），首次登录时须修改密码。", "success")
    return redirect(url_for("admin.users"))


@bp.route("/users/<int:user_id>/edit", methods=["GET", "POST"])
@login_required
@roles_required("admin")
def user_edit(user_id: int):
    user = db.get_or_404(User, user_id)
    form = UserEditForm(name_required=bool(user.real_name))
    form.set_county_choices(_counties())
    if request.method == "GET":
        form.role.data = user.role
        form.county.data = str(user.county_id) if user.county_id else ""
        form.enabled.data = user.is_enabled
        form.real_name.data = user.real_name or ""
        form.phone.data = user.phone or ""
    if not form.validate_on_submit():
        return _form_page(form, user)
    try:
        with transaction(db.session):
            changes = update_user(
                db.session, user, role=form.role.data, county_id=form.county_id, enabled=form.enabled.data,
                real_name=form.real_name.data, phone=form.phone.data, actor=_actor(),
            )
    except UserError as exc:
        return _form_page(form, user, str(exc))
    if changes:
        flash(f"已保存用户 {user.username} 的修改。", "success")
    else:
        flash(f"用户 {user.username} 没有任何修改。", "info")
    return redirect(url_for("admin.users"))


@bp.route("/users/<int:user_id>/password", methods=["GET", "POST"])
@login_required
@roles_required("admin")
def user_password(user_id: int):
    """Reset: a temporary password typed by the admin or generated and shown once; the user
    must change it at the next sign-in, and every open session of the account ends."""
    user = db.get_or_404(User, user_id)
    if user.id == current_user.id:
        flash("不能在这里重置自己的密码：请使用“修改密码”。", "error")
        return redirect(url_for("auth.change_password"))
    form = ResetPasswordForm(username=user.username)
    if not form.validate_on_submit():
        code = 400 if request.method == "POST" else 200
        return render_template("admin/user_password.html", form=form, user=user), code
    try:
        with transaction(db.session, write=True):
            user = db.session.get(User, user_id)
            password = reset_password(db.session, user, actor=_actor(),
                                      password=form.password.data if form.mode.data == "manual" else None,
                                      now=utcnow(), settings=_throttle())
    except UserError as exc:
        flash(str(exc), "error")
        return render_template("admin/user_password.html", form=form, user=user), 400
    if form.mode.data == "manual":
        flash(f"已重置 {user.display_name}（{user.username}）的密码；其首次登录时须修改密码。", "success")
        return redirect(url_for("admin.users"))
    # shown in this response only: never stored, never in a redirect or the session cookie
    return render_template("admin/user_password_done.html", user=user, password=password)


@bp.route("/users/<int:user_id>/unlock", methods=["POST"])
@login_required
@roles_required("admin")
def user_unlock(user_id: int):
    form = ActionForm()
    if not form.validate_on_submit():
        abort(400)
    with transaction(db.session, write=True):
        user = db.get_or_404(User, user_id)
        unlocked = unlock_user(db.session, user, actor=_actor(), now=utcnow(), settings=_throttle())
    if unlocked:
        flash(f"已解锁 {user.display_name}（{user.username}）的账号。", "success")
    else:
        flash(f"{user.display_name}（{user.username}）的账号没有被锁定。", "info")
    return redirect(request.form.get("back") if _local(request.form.get("back")) else url_for("admin.users"))


def _local(target: str | None) -> bool:
    return bool(target) and target.startswith("/admin/users") and "//" not in target


# ---------------------------------------------------------------------------
# Bulk import: upload → preview (nothing written) → confirm once → result
# ---------------------------------------------------------------------------


def _store() -> ImportStore:
    return ImportStore(current_app.config["UPLOAD_DIR"])


def _reports_dir() -> Path:
    return Path(current_app.config["IMPORT_REPORTS_DIR"])


def _own_import(token: str) -> dict:
    """The state of one of this admin's uploads; anything else is 404."""
    try:
        state = _store().load(token)
    except (FileNotFoundError, ValueError):
        abort(404)
    if state.get("actor_id") != current_user.id:
        abort(404)
    return state


@bp.route("/users/import", methods=["GET", "POST"])
@login_required
@roles_required("admin")
def user_import():
    form = UserImportForm()
    if not form.validate_on_submit():
        return render_template("admin/user_import.html", form=form), 400 if request.method == "POST" else 200
    upload = form.file.data
    filename = Path(upload.filename or "users").name[:200]
    suffix = Path(filename).suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        flash("只支持 .xlsx、.xls、.csv 文件。", "error")
        return render_template("admin/user_import.html", form=form), 400
    store = _store()
    token, path = store.new(suffix)
    save_private(upload.stream, path)
    try:
        with transaction(db.session, commit=False):  # a preview writes nothing
            check = check_user_sheet(db.session, path, ReadLimits.from_config(current_app.config))
    except UserImportFailed as exc:
        store.discard(token)
        flash(f"文件无法导入：{exc}", "error")
        return render_template("admin/user_import.html", form=form), 400
    report = write_error_report(_reports_dir(), check.sha256, check.rejections)
    store.save(token, preview_state(check, actor_id=current_user.id, filename=filename, error_report=report))
    return redirect(url_for("admin.user_import_view", token=token))


@bp.route("/users/import/<token>")
@login_required
@roles_required("admin")
def user_import_view(token: str):
    state = _own_import(token)
    has_passwords = _store().passwords_path(token).exists()
    return render_template("admin/user_import_preview.html", state=state, token=token, action=ActionForm(),
                           has_passwords=has_passwords)


@bp.route("/users/import/<token>/confirm", methods=["POST"])
@login_required
@roles_required("admin")
def user_import_confirm(token: str):
    form = ActionForm()
    if not form.validate_on_submit():
        abort(400)
    state = _own_import(token)
    here = url_for("admin.user_import_view", token=token)
    store = _store()
    if state["status"] != "preview" or not store.claim(token):
        flash("这批用户已经确认创建过，没有重复创建。", "info")
        return redirect(here)
    passwords = store.passwords_path(token)
    try:
        with transaction(db.session, write=True):
            check = check_user_sheet(db.session, store.source(token), ReadLimits.from_config(current_app.config))
            if check.sha256 != state["sha256"] or [r.username for r in check.accepted] != state["accepted_names"]:
                raise UserImportFailed("预览之后数据已有变化（例如有用户名已被占用），请重新上传预览。")
            created = create_accounts(db.session, check, actor=_actor(), filename=state["filename"])
            if any(c.generated for c in created):
                write_passwords_file(passwords, created)
    except (UserImportFailed, IntegrityError, FileNotFoundError) as exc:
        passwords.unlink(missing_ok=True)
        store.release(token)
        message = str(exc) if isinstance(exc, UserImportFailed) else "有用户名刚被占用，或上传的文件已不存在，请重新上传预览。"
        flash(f"没有创建任何用户：{message}", "error")
        return redirect(here)
    except BaseException:
        passwords.unlink(missing_ok=True)
        store.release(token)
        raise
    state.update(status="done", created=[{"username": c.username, "real_name": c.real_name, "role": ROLES[c.role],
                                          "county": c.county or "", "generated": c.generated} for c in created],
                 confirmed_at=utcnow().isoformat(timespec="seconds"))
    store.save(token, state)
    store.source(token).unlink(missing_ok=True)  # it may hold initial passwords: not kept
    flash(f"已创建 {len(created)} 个用户，拒绝 {state['rejected']} 行。新用户首次登录时须修改密码。", "success")
    return redirect(here)


@bp.route("/users/import/<token>/passwords", methods=["POST"])
@login_required
@roles_required("admin")
def user_import_passwords(token: str):
    """The generated passwords, once: the file is deleted as it is sent (a POST: it changes state)."""
    form = ActionForm()
    if not form.validate_on_submit():
        abort(400)
    state = _own_import(token)
    data = _store().take_passwords(token)
    if data is None:
        flash("初始密码文件只能下载一次，已经下载过了。如有遗失，请逐个重置密码。", "error")
        return redirect(url_for("admin.user_import_view", token=token))
    with transaction(db.session):
        audit(db.session, "export.user_passwords", current_user, target=f"file:{state['sha256'][:16]} {state['filename']}",
              detail=f"{len(state.get('created', []))} 个账号")
    return send_file(io.BytesIO(data), as_attachment=True, download_name="用户初始密码.xlsx",
                     mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")


@bp.route("/users/import/<token>/report.<fmt>")
@login_required
@roles_required("admin")
def user_import_report(token: str, fmt: str):
    state = _own_import(token)
    if fmt not in ("xlsx", "csv") or not state.get("error_report"):
        abort(404)
    path = _reports_dir() / f"{state['error_report']}.{fmt}"
    if not path.exists():
        abort(404)
    with transaction(db.session):
        audit(db.session, "export.import_errors", current_user, target=f"file:{state['sha256'][:16]} {state['filename']}",
              detail=path.name)
    return send_file(path, as_attachment=True, download_name=f"用户导入错误报告.{fmt}")
