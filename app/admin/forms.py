"""Forms of the user management pages; every message in Chinese (WTForms' defaults are English).

The rules themselves (user names, real names, phones, passwords) live in app/auth/services.py
and app/auth/passwords.py; the forms call them so an error shows beside its field.
"""
from app.core.forms import SafeForm as FlaskForm
from flask_wtf.file import FileAllowed, FileField, FileRequired
from wtforms import BooleanField, PasswordField, RadioField, SelectChoice, SelectField, StringField, SubmitField
from wtforms.validators import DataRequired, EqualTo, Length, Optional, ValidationError

from app.auth.passwords import password_problem
from app.core.upload_guard import UPLOAD_EXTENSIONS, UPLOAD_REFUSED
from app.auth.services import (
    MAX_PASSWORD_LENGTH,
    MAX_REAL_NAME_LENGTH,
    MAX_USERNAME_LENGTH,
    MIN_PASSWORD_LENGTH,
    UserError,
    clean_real_name,
    clean_user_phone,
    clean_username,
)
from app.models import ROLES

ROLE_CHOICES = [SelectChoice(key, label) for key, label in ROLES.items()]
PASSWORD_LENGTH = f"密码至少{MIN_PASSWORD_LENGTH}位，不超过{MAX_PASSWORD_LENGTH}个字符"


def _strip(value):
    return value.strip() if isinstance(value, str) else value


def _by_service(clean, field) -> None:
    try:
        clean(field.data)
    except UserError as exc:
        raise ValidationError(str(exc).rstrip("。")) from None


class _UserFields(FlaskForm):
    real_name = StringField(
        "姓名",
        filters=[_strip],
        validators=[DataRequired("请填写姓名"),
                    Length(max=MAX_REAL_NAME_LENGTH, message=f"姓名不超过{MAX_REAL_NAME_LENGTH}个字")],
    )
    phone = StringField("手机（可不填）", filters=[_strip], validators=[Optional(), Length(max=40, message="手机号码过长")])
    # Chinese messages for invalid choices (WTForms' own "Not a valid choice." is English)
    role = SelectField("角色", choices=ROLE_CHOICES, invalid_choice_message="请选择有效的角色")
    county = SelectField("所属县区", choices=[], invalid_choice_message="请选择有效的县区")

    def set_county_choices(self, counties) -> None:
        self.county.choices = [SelectChoice("", "（无，市级管理员）")] + [
            SelectChoice(str(c.id), c.name) for c in counties
        ]

    def validate_county(self, field) -> None:
        if self.role.data in ROLES and self.role.data != "admin" and not field.data:
            raise ValidationError("县级督导和调查员必须指定所属县区")

    def validate_real_name(self, field) -> None:
        _by_service(clean_real_name, field)

    def validate_phone(self, field) -> None:
        _by_service(clean_user_phone, field)

    @property
    def county_id(self) -> int | None:
        if self.role.data == "admin" or not self.county.data:
            return None
        return int(self.county.data)


class UserCreateForm(_UserFields):
    username = StringField(
        "用户名",
        filters=[_strip],
        validators=[
            DataRequired("请输入用户名"),
            Length(max=MAX_USERNAME_LENGTH, message=f"用户名不超过{MAX_USERNAME_LENGTH}个字符"),
        ],
    )
    password = PasswordField(
        "初始密码",
        validators=[DataRequired("请输入密码"), Length(min=MIN_PASSWORD_LENGTH, max=MAX_PASSWORD_LENGTH,
                                                        message=PASSWORD_LENGTH)],
    )
    confirm = PasswordField(
        "确认密码", validators=[DataRequired("请再次输入密码"), EqualTo("password", "两次输入的密码不一致")]
    )
    submit = SubmitField("创建用户")

    def validate_username(self, field) -> None:
        _by_service(clean_username, field)

    def validate_password(self, field) -> None:
        problem = password_problem(field.data, self.username.data)
        if problem:
            raise ValidationError(problem.rstrip("。"))


class UserEditForm(_UserFields):
    enabled = BooleanField("启用（停用后不能登录）")
    submit = SubmitField("保存")

    def __init__(self, *args, name_required: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        if not name_required:  # an account from before real names: it may stay without one
            self.real_name.validators = [Optional(), *self.real_name.validators[1:]]


class ResetPasswordForm(FlaskForm):
    mode = RadioField("方式", choices=[SelectChoice("generate", "自动生成临时密码（仅显示一次）"),
                                        SelectChoice("manual", "由我输入临时密码")],
                      default="generate", validate_choice=True, invalid_choice_message="请选择重置方式")
    password = PasswordField("临时密码", validators=[Length(max=MAX_PASSWORD_LENGTH, message=PASSWORD_LENGTH)])
    confirm = PasswordField("确认临时密码")
    submit = SubmitField("重置密码")

    def __init__(self, *args, username: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self._username = username

    def validate_password(self, field) -> None:
        if self.mode.data != "manual":
            return
        if not field.data:
            raise ValidationError("请输入临时密码")
        problem = password_problem(field.data, self._username)
        if problem:
            raise ValidationError(problem.rstrip("。"))

    def validate_confirm(self, field) -> None:
        if self.mode.data == "manual" and field.data != self.password.data:
            raise ValidationError("两次输入的密码不一致")


class ActionForm(FlaskForm):
    """A button that changes something: only the CSRF token."""

    submit = SubmitField("确定")


class UserImportForm(FlaskForm):
    file = FileField(
        "用户表",
        validators=[FileRequired("请选择要上传的文件"), FileAllowed(UPLOAD_EXTENSIONS, UPLOAD_REFUSED)],
    )
    submit = SubmitField("上传并预览")
