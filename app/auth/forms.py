from app.core.forms import SafeForm as FlaskForm
from wtforms import PasswordField, StringField, SubmitField
from wtforms.validators import DataRequired, EqualTo, Length

from app.auth.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH


class LoginForm(FlaskForm):
    username = StringField("用户名", validators=[DataRequired("请输入用户名"), Length(max=50)])
    password = PasswordField("密码", validators=[DataRequired("请输入密码"), Length(max=200)])
    submit = SubmitField("登录")


class LogoutForm(FlaskForm):
    submit = SubmitField("退出")


class SignOutEverywhereForm(FlaskForm):
    submit = SubmitField("退出所有设备")


class ChangePasswordForm(FlaskForm):
    current = PasswordField("当前密码", validators=[DataRequired("请输入当前密码"), Length(max=MAX_PASSWORD_LENGTH)])
    password = PasswordField(
        "新密码",
        validators=[
            DataRequired("请输入新密码"),
            Length(min=MIN_PASSWORD_LENGTH, max=MAX_PASSWORD_LENGTH,
                   message=f"密码至少{MIN_PASSWORD_LENGTH}位，不超过{MAX_PASSWORD_LENGTH}个字符"),
        ],
    )
    confirm = PasswordField(
        "确认新密码", validators=[DataRequired("请再次输入新密码"), EqualTo("password", "两次输入的新密码不一致")]
    )
    submit = SubmitField("修改密码")
