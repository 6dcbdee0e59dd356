"""Forms of the organisation maintenance pages.

They carry what was typed and the CSRF token; the rules (names, codes, phones, reasons) are
checked by app/org/maintenance.py, whose Chinese message the page shows, so the web, the
command line and the sheet import refuse the same things with the same words.
"""
from app.core.forms import SafeForm as FlaskForm
from flask_wtf.file import FileAllowed, FileField, FileRequired
from wtforms import SelectChoice, SelectField, StringField, SubmitField, TextAreaField

from app.models import INSTITUTION_TYPES
from app.core.upload_guard import UPLOAD_EXTENSIONS, UPLOAD_REFUSED

REASON_ATTRS = {"rows": 2, "maxlength": 500}


class CountyForm(FlaskForm):
    name = StringField("县区名称", render_kw={"maxlength": 50, "autocomplete": "off"})
    code = StringField("县区代码", description="6位行政区划代码，如 430621",
                       render_kw={"maxlength": 6, "inputmode": "numeric", "autocomplete": "off"})


class CountyEditForm(CountyForm):
    reason = TextAreaField("修改原因（选填）", render_kw=REASON_ATTRS)


class InstitutionForm(FlaskForm):
    name = StringField("机构名称", render_kw={"maxlength": 100, "autocomplete": "off"})
    code = StringField("机构代码（选填）", description="字母、数字和“-”，不超过30位；全市唯一",
                       render_kw={"maxlength": 30, "autocomplete": "off"})
    # the service checks the value (a tampered one gets its Chinese message, not WTForms' English one)
    type = SelectField("机构类型", choices=[SelectChoice("", "请选择")] + [SelectChoice(t, t) for t in INSTITUTION_TYPES], validate_choice=False)


class InstitutionEditForm(InstitutionForm):
    reason = TextAreaField("修改原因（选填）", render_kw=REASON_ATTRS)


class TeamForm(FlaskForm):
    name = StringField("团队名称", render_kw={"maxlength": 100, "autocomplete": "off"})
    leader_doctor = StringField("团队长（选填）", render_kw={"maxlength": 50, "autocomplete": "off"})
    doctor_phone = StringField("联系电话（选填）", description="手机号，或带区号的固定电话，如 0730-8221234",
                               render_kw={"maxlength": 20, "inputmode": "tel", "autocomplete": "off"})


class TeamEditForm(TeamForm):
    reason = TextAreaField("修改原因（选填）", render_kw=REASON_ATTRS)


class ReasonForm(FlaskForm):
    """Deactivate, reactivate, move, merge: a confirmation with a reason."""

    reason = TextAreaField("原因", render_kw=REASON_ATTRS)


class MoveForm(ReasonForm):
    target = StringField("调整到机构")  # an id, checked against the institutions offered


class MergeForm(ReasonForm):
    target = StringField("并入团队")  # an id, checked against the teams offered


class OrgUploadForm(FlaskForm):
    file = FileField(
        "机构与团队表",
        validators=[
            FileRequired("请选择要上传的文件"),
            FileAllowed(UPLOAD_EXTENSIONS, UPLOAD_REFUSED),
        ],
    )
    submit = SubmitField("上传并预览")


class ConfirmForm(FlaskForm):
    submit = SubmitField("确认导入")
