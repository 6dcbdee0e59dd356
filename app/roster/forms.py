from app.core.forms import SafeForm as FlaskForm
from flask_wtf.file import FileAllowed, FileField, FileRequired
from wtforms import BooleanField, SelectField, SubmitField, ValidationError

from app.core.upload_guard import UPLOAD_EXTENSIONS, UPLOAD_REFUSED


class UploadForm(FlaskForm):
    file = FileField(
        "名册文件",
        validators=[
            FileRequired("请选择要上传的文件"),
            FileAllowed(UPLOAD_EXTENSIONS, UPLOAD_REFUSED),
        ],
    )
    county = SelectField("县区", choices=[], validate_choice=False)
    create_missing = BooleanField("自动新建文件中不存在的机构和团队")
    full = BooleanField("全量名册：文件涉及机构中不在文件里的居民标记为停用")
    submit = SubmitField("上传并预览")

    def validate_county(self, field):
        if field.data not in {value for value, _label in field.choices}:
            raise ValidationError("请选择列表中的县区")


class ConfirmForm(FlaskForm):
    submit = SubmitField("确认导入")
