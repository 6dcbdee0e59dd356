"""Forms of the user management pages; every message in Chinese (WTForms' defaults are English)."""
from flask_wtf import FlaskForm
from wtforms import BooleanField, PasswordField, SelectChoice, SelectField, StringField, SubmitField
from wtforms.validators import DataRequired, EqualTo, Length, Optional, ValidationError

from app.auth.services import MAX_USERNAME_LENGTH, MIN_PASSWORD_LENGTH
from app.models import ROLES

ROLE_CHOICES = [SelectChoice(key, label) for key, label in ROLES.items()]
PASSWORD_SHORT = f"密码至少{MIN_PASSWORD_LENGTH}位"


class _UserFields(FlaskForm):
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

    @property
    def county_id(self) -> int | None:
        if self.role.data == "admin" or not self.county.data:
            return None
        return int(self.county.data)


class UserCreateForm(_UserFields):
    username = StringField(
        "用户名",
        filters=[lambda value: value.strip() if isinstance(value, str) else value],
        validators=[
            DataRequired("请输入用户名"),
            Length(max=MAX_USERNAME_LENGTH, message=f"用户名不超过{MAX_USERNAME_LENGTH}个字符"),
        ],
    )
    password = PasswordField(
        "密码",
        validators=[DataRequired("请输入密码"), Length(min=MIN_PASSWORD_LENGTH, max=200, message=PASSWORD_SHORT)],
    )
    confirm = PasswordField(
        "确认密码", validators=[DataRequired("请再次输入密码"), EqualTo("password", "两次输入的密码不一致")]
    )
    submit = SubmitField("创建用户")

    def validate_username(self, field) -> None:
        if any(ch.isspace() for ch in field.data):
            raise ValidationError("用户名不能包含空格")


class UserEditForm(_UserFields):
    enabled = BooleanField("启用（停用后不能登录）")
    password = PasswordField(
        "新密码（不修改请留空）",
        validators=[Optional(), Length(min=MIN_PASSWORD_LENGTH, max=200, message=PASSWORD_SHORT)],
    )
    confirm = PasswordField("确认新密码", validators=[EqualTo("password", "两次输入的密码不一致")])
    submit = SubmitField("保存")
