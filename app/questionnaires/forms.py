"""A WTForms form for one questionnaire item.

The form only collects input: ``Questionnaire.clean`` decides what is valid (the one source
of truth), its Chinese messages land on ``form.value.errors``, and after a successful
``validate_on_submit()`` ``form.cleaned`` holds the dict of answer keys to store.
"""
from __future__ import annotations

from collections.abc import Mapping

from app.core.forms import SafeForm as FlaskForm
from wtforms import StringField, SubmitField

from app.questionnaires.items import Item
from app.questionnaires.model import DETAIL_MAX_LENGTH, Context, Questionnaire, detail_key

CSRF_MESSAGE = "表单已过期或来源无效，请刷新页面后重试。"


class ItemForm(FlaskForm):
    submit = SubmitField("下一题")

    # set by build_form
    questionnaire: Questionnaire
    item: Item
    context: Context
    answers: Mapping
    cleaned: dict | None = None

    def validate(self, extra_validators=None) -> bool:
        self.cleaned = None
        ok = super().validate(extra_validators)
        csrf = getattr(self, "csrf_token", None)
        if csrf is not None and csrf.errors:
            csrf.errors = [CSRF_MESSAGE]
            self.form_errors.append(CSRF_MESSAGE)
        raw = {"value": self.item.form_input(self.value), "detail": (self.detail.data or "") if "detail" in self else ""}
        cleaned, errors = self.questionnaire.clean(self.item.code, raw, self.context, self.answers)
        if errors:
            self.value.errors = list(self.value.errors) + errors
            return False
        if not ok:
            return False
        self.cleaned = cleaned
        return True


def build_form(
    questionnaire: Questionnaire,
    item: Item | str,
    context: Context,
    formdata=None,
    data: Mapping | None = None,
    *,
    answers: Mapping | None = None,
    meta: dict | None = None,
) -> ItemForm:
    """The form for ``item``. ``formdata=None`` means the current request's form when it was
    submitted (as FlaskForm does). ``data`` pre-fills (``{"value": ..., "detail": ...}``); when
    it is None the item's stored answer in ``answers`` is shown. ``answers`` also feeds clean()'s
    cross-item check (service count against the services chosen)."""
    if isinstance(item, str):
        item = questionnaire.item(item)
    fields: dict = {"value": item.form_field(context)}
    if item.has_detail:
        label = next(o.detail_label for o in item.options if o.detail_label)
        fields["detail"] = StringField(label, render_kw={"maxlength": DETAIL_MAX_LENGTH})
    form_class = type(f"ItemForm_{item.code}", (ItemForm,), fields)

    answers = dict(answers or {})
    if data is None and item.code in answers:
        data = {"value": answers[item.code], "detail": answers.get(detail_key(item.code)) or ""}
    kwargs = {"data": data}
    if formdata is not None:
        kwargs["formdata"] = formdata
    if meta is not None:
        kwargs["meta"] = meta
    form = form_class(**kwargs)
    form.questionnaire, form.item, form.context, form.answers = questionnaire, item, context, answers
    return form
