"""The rectification list's forms (交办, 记录整改并关闭, 重新打开)."""
from __future__ import annotations

from app.core.forms import SafeForm as FlaskForm
from wtforms import SubmitField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from app.reports.problems import NOTE_MAX_LENGTH, REASON_MAX_LENGTH


def _strip(value):
    return value.strip() if isinstance(value, str) else value


class ProblemActionForm(FlaskForm):
    """交办机构: CSRF only."""

    submit = SubmitField("交办机构")


class CloseProblemForm(FlaskForm):
    note = TextAreaField("整改情况", filters=[_strip], validators=[
        DataRequired("请填写整改情况。"),
        Length(max=NOTE_MAX_LENGTH, message=f"整改情况不能超过{NOTE_MAX_LENGTH}字。"),
    ])
    submit = SubmitField("记录整改并关闭")


class ReopenProblemForm(FlaskForm):
    reason = TextAreaField("重新打开的原因（可选）", filters=[_strip], validators=[
        Optional(), Length(max=REASON_MAX_LENGTH, message=f"原因不能超过{REASON_MAX_LENGTH}字。"),
    ])
    submit = SubmitField("重新打开")
