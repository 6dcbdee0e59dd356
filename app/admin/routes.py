"""Admin pages: user management."""
from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required, login_user
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.admin import bp
from app.admin.forms import UserCreateForm, UserEditForm
from app.auth.scope import roles_required
from app.auth.services import UserError, create_user, update_user
from app.extensions import db
from app.models import ROLES, County, User


def _counties() -> list[County]:
    return db.session.scalars(select(County).order_by(County.code)).all()


def _form_page(form, user: User | None, error: str | None = None):
    if error:
        flash(error, "error")
    status = 400 if request.method == "POST" else 200
    return render_template("admin/user_form.html", form=form, user=user, roles=ROLES), status


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
    elif county_arg.isdigit():
        stmt = stmt.where(User.county_id == int(county_arg))
    else:
        county_arg = ""
    if role_arg in ROLES:
        stmt = stmt.where(User.role == role_arg)
    else:
        role_arg = ""
    stmt = stmt.order_by(County.code.is_not(None), County.code, User.username)
    page = db.paginate(stmt, per_page=50, error_out=False)
    return render_template(
        "admin/users.html", page=page, counties=counties, roles=ROLES, county_arg=county_arg, role_arg=role_arg
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
    actor = current_user._get_current_object()
    try:
        user = create_user(
            db.session, form.username.data, form.role.data, form.password.data,
            county_id=form.county_id, actor=actor,
        )
        db.session.commit()
    except UserError as exc:
        db.session.rollback()
        return _form_page(form, None, str(exc))
    except IntegrityError:  # the same name created at the same moment by someone else
        db.session.rollback()
        return _form_page(form, None, f"用户名“{form.username.data}”已存在。")
    flash(f"已创建用户 {user.username}（{user.role_label}）。", "success")
    return redirect(url_for("admin.users"))


@bp.route("/users/<int:user_id>/edit", methods=["GET", "POST"])
@login_required
@roles_required("admin")
def user_edit(user_id: int):
    user = db.get_or_404(User, user_id)
    form = UserEditForm()
    form.set_county_choices(_counties())
    if request.method == "GET":
        form.role.data = user.role
        form.county.data = str(user.county_id) if user.county_id else ""
        form.enabled.data = user.is_enabled
    if not form.validate_on_submit():
        return _form_page(form, user)
    actor = current_user._get_current_object()
    try:
        changes = update_user(
            db.session, user, role=form.role.data, county_id=form.county_id, enabled=form.enabled.data,
            password=form.password.data or None, actor=actor,
        )
        db.session.commit()
    except UserError as exc:
        db.session.rollback()
        return _form_page(form, user, str(exc))
    if changes and "password" in changes and user.id == current_user.id:
        login_user(user)  # the new password ended the other sessions; this one goes on
    if changes:
        flash(f"已保存用户 {user.username} 的修改。", "success")
    else:
        flash(f"用户 {user.username} 没有任何修改。", "info")
    return redirect(url_for("admin.users"))
