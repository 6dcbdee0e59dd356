from app.core.forms import SafeForm as FlaskForm
from wtforms import SelectField, StringField, SubmitField
from wtforms.validators import DataRequired, Length


class DrawForm(FlaskForm):
    county = SelectField("县市区", choices=[], validate_choice=False)
    submit = SubmitField("抽取本月样本")


class RedrawForm(FlaskForm):
    reason = StringField("重新抽样原因", validators=[DataRequired("请填写重新抽样的原因"), Length(max=200)])
    submit = SubmitField("重新抽样")
