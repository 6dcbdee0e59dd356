"""A WTForms form for one questionnaire item.

The form only collects input: ``Questionnaire.clean`` decides what is valid (the one source
of truth), its Chinese messages land on ``form.value.errors``, and after a successful
``validate_on_submit()`` ``form.cleaned`` holds the dict of answer keys to store.
"""
from __future__ import annotations

from collections.abc import Mapping

from flask_wtf import FlaskForm
from wtforms import IntegerField, RadioField, SelectMultipleField, StringField, SubmitField, TextAreaField, widgets
from wtforms.fields.choices import SelectChoice

from app.questionnaires import DETAIL_MAX_LENGTH, Context, Item, Questionnaire

CSRF_MESSAGE = "表单已过期或来源无效，请刷新页面后重试。"


class _IntegerField(IntegerField):
    """Never raises WTForms' English "Not a valid integer value."; clean() judges the raw text."""

    def process_formdata(self, valuelist):
        if valuelist:
            try:
                self.data = int(valuelist[0])
            except (TypeError, ValueError):
                self.data = None


class _CheckboxField(SelectMultipleField):
    widget = widgets.ListWidget(prefix_label=False)
    option_widget = widgets.CheckboxInput()


class ItemForm(FlaskForm):
    submit = SubmitField("下一题")

    # set by build_form
    questionnaire: Questionnaire
    item: Item
    context: Context
    answers: Mapping
    cleaned: dict | None = None

    def _raw(self, field):
        raw = getattr(field, "raw_data", None)
        if raw is None:  # built from data only
            raw = field.data
            if self.item.kind == "multi":
                return list(raw or [])
            return "" if raw is None else raw
        if self.item.kind == "multi":
            return list(raw)
        return raw[0] if raw else ""

    def validate(self, extra_validators=None) -> bool:
        self.cleaned = None
        ok = super().validate(extra_validators)
        csrf = getattr(self, "csrf_token", None)
        if csrf is not None and csrf.errors:
            csrf.errors = [CSRF_MESSAGE]
            self.form_errors.append(CSRF_MESSAGE)
        raw = {"value": self._raw(self.value), "detail": (self.detail.data or "") if "detail" in self else ""}
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
    fields: dict = {}
    choices = [SelectChoice(o.value, o.label) for o in item.options_for(context)]
    if item.kind == "single":
        fields["value"] = RadioField(item.title, choices=choices, validate_choice=False)
    elif item.kind == "multi":
        fields["value"] = _CheckboxField(item.title, choices=choices, validate_choice=False)
    elif item.kind == "integer":
        render_kw = {"inputmode": "numeric"}
        if item.minimum is not None:
            render_kw["min"] = item.minimum
        if item.maximum is not None:
            render_kw["max"] = item.maximum
        fields["value"] = _IntegerField(item.title, render_kw=render_kw)
    else:
        render_kw = {"maxlength": item.max_length} if item.max_length else {}
        fields["value"] = TextAreaField(item.title, render_kw=render_kw)
    if item.has_detail:
        label = next(o.detail_label for o in item.options if o.detail_label)
        fields["detail"] = StringField(label, render_kw={"maxlength": DETAIL_MAX_LENGTH})
    form_class = type(f"ItemForm_{item.code}", (ItemForm,), fields)

    answers = dict(answers or {})
    if data is None and item.code in answers:
        data = {"value": answers[item.code], "detail": answers.get(f"{item.code}.detail") or ""}
    kwargs = {"data": data}
    if formdata is not None:
        kwargs["formdata"] = formdata
    if meta is not None:
        kwargs["meta"] = meta
    form = form_class(**kwargs)
    form.questionnaire, form.item, form.context, form.answers = questionnaire, item, context, answers
    return form
