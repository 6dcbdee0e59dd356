from app.core.forms import SafeForm as FlaskForm
from wtforms import HiddenField, SelectField, StringField, SubmitField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional


class AttemptForm(FlaskForm):
    """One attempt's outcome; the outcome comes from the button pressed."""

    outcome = StringField(validators=[DataRequired("请选择拨打结果。"), Length(max=30)])
    number = HiddenField()
    note = TextAreaField("说明", validators=[Optional(), Length(max=500, message="说明不能超过500字。")])
    # parsed by the view (app/calls/routes.py: _callback_time) so every message is Chinese
    callback_date = StringField("回访日期", validators=[Optional(), Length(max=10)])
    callback_time = StringField("回访时间", validators=[Optional(), Length(max=5)])


class InterruptForm(FlaskForm):
    """通话中断，约定续访: when to call back (required), and a note."""

    note = TextAreaField("说明", validators=[Optional(), Length(max=500, message="说明不能超过500字。")])
    callback_date = StringField("续访日期", validators=[Optional(), Length(max=10)])
    callback_time = StringField("续访时间", validators=[Optional(), Length(max=5)])


class ActionForm(FlaskForm):
    """A button that changes state (claim, release, start, next): CSRF only."""

    number = HiddenField()
    submit = SubmitField("确定")


class FinishForm(FlaskForm):
    breakoff = HiddenField()
    submit = SubmitField("提交问卷")


class AssignForm(FlaskForm):
    caller = SelectField("分配给", choices=[], validate_choice=True)
    cases = HiddenField()
    submit = SubmitField("分配")


class EditAnswerForm(FlaskForm):
    reason = TextAreaField("修改原因", validators=[DataRequired("请填写修改原因。"), Length(max=500)])
