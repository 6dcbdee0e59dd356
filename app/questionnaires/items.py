"""One class per item kind, registered in ``ITEM_TYPES`` under the ``kind`` the JSON uses.

A kind owns what differs between kinds: cleaning a raw answer (with its Chinese messages),
routing after an answer (an option's ``next``/``end``), the text shown for a stored answer,
the WTForms field that collects it and ``widget``, the name of the macro the call pages use
to draw that field.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from wtforms import Field, RadioField, TextAreaField
from wtforms.fields.choices import SelectChoice

from app.questionnaires.fields import CheckboxField, LenientIntegerField
from app.questionnaires.model import DETAIL_MAX_LENGTH, Context, Option, QuestionnaireError, detail_key

if TYPE_CHECKING:
    from app.questionnaires.model import Questionnaire

Cleaned = tuple[dict, list[str]]
UNANSWERED = "（未回答）"
INVALID_CHOICE = "所选选项无效，请重新选择"


def _single_text(value) -> str:
    """A single choice's input as stripped text ("" when nothing, or several values, came)."""
    if isinstance(value, (list, tuple)):
        value = value[0] if len(value) == 1 else None
    return (value or "").strip() if isinstance(value, str) or value is None else str(value)


def _chosen_texts(value) -> set[str]:
    """A multiple choice's input as the set of non-blank values chosen."""
    if value is None:
        value = []
    elif isinstance(value, str):
        value = [value]
    return {v.strip() for v in value if isinstance(v, str) and v.strip()}


def _clean_detail(option: Option, detail) -> tuple[str, list[str]]:
    """The detail the chosen option asks for (the proxy's relation to the resident)."""
    detail = detail.strip() if isinstance(detail, str) else ""
    if not detail:
        return "", [f"请填写{option.detail_label}"]
    if len(detail) > DETAIL_MAX_LENGTH:
        return "", [f"{option.detail_label}不能超过{DETAIL_MAX_LENGTH}个字"]
    return detail, []


@dataclass(frozen=True)
class Item:
    """An item of the questionnaire; a subclass per kind (see ``ITEM_TYPES``)."""

    kind: ClassVar[str]  # the "kind" of the JSON file
    name: ClassVar[str]  # what the loader's messages call it
    widget: ClassVar[str]  # the macro of calls/_ask.html and calls/_correct.html that draws the field

    code: str
    title: str
    text: str  # what the caller reads aloud
    options: tuple[Option, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    max_length: int | None = None
    required: bool = True
    role: str | None = None
    next: str | None = None
    note: str | None = None  # hint for the caller, not read aloud

    def option(self, value) -> Option:
        for option in self.options:
            if option.value == value:
                return option
        raise QuestionnaireError(f"题目“{self.code}”没有选项“{value}”")

    def options_for(self, context: Context) -> tuple[Option, ...]:
        """The options that may be offered for this resident (e.g. child proxy only up to age 6)."""
        return tuple(option for option in self.options if option.allowed(context))

    @property
    def has_detail(self) -> bool:
        return any(option.detail_label for option in self.options)

    # -- answers ------------------------------------------------------------------------------

    def clean(self, raw: Mapping, context: Context, answers: Mapping, questionnaire: Questionnaire) -> Cleaned:
        """``(to_store, errors)`` for the form input ``raw = {"value": ..., "detail": ...}``;
        ``to_store`` is ``{}`` when there are errors (see ``Questionnaire.clean``)."""
        result, errors = self._clean(raw.get("value"), raw, context, answers, questionnaire)
        return ({} if errors else result), errors

    def _clean(self, value, raw: Mapping, context: Context, answers: Mapping, questionnaire: Questionnaire) -> Cleaned:
        raise NotImplementedError

    def _blank(self, empty, message: str) -> Cleaned:
        """No answer given: stored as ``empty`` when the item is optional, else ``message``."""
        return ({self.code: empty}, []) if not self.required else ({}, [message])

    def ends(self, value) -> bool:
        """Whether this answer ends the interview politely."""
        return False

    def jump(self, value) -> str | None:
        """The item an answer's option leads to, if it names one."""
        return None

    def asks_detail(self, value) -> bool:
        """Whether this answer keeps a detail under ``detail_key(code)``."""
        return False

    def display(self, value, detail: str | None = None) -> str:
        """The answer as case pages and the Excel report show it."""
        if value is None or value == []:
            return UNANSWERED
        return self._display(value, detail)

    def _display(self, value, detail: str | None) -> str:
        return str(value)

    # -- forms --------------------------------------------------------------------------------

    def form_field(self, context: Context) -> Field:
        """The unbound WTForms field that collects the answer."""
        raise NotImplementedError

    def form_input(self, field: Field):
        """What the bound field received, as ``clean`` takes it for ``raw["value"]``."""
        raw = getattr(field, "raw_data", None)
        if raw is None:  # built from data only
            return "" if field.data is None else field.data
        return raw[0] if raw else ""

    def plain_answer(self, context: Context) -> dict:
        """A valid form input that says as little as possible (the first option offered,
        the minimum, nothing), for simulated interviews."""
        return {"value": ""}

    def _choices(self, context: Context) -> list[SelectChoice]:
        return [SelectChoice(o.value, o.label) for o in self.options_for(context)]


class SingleChoice(Item):
    kind = "single"
    name = "单选题"
    widget = "choices"

    def _clean(self, value, raw, context, answers, questionnaire) -> Cleaned:
        value = _single_text(value)
        if not value:
            return self._blank(None, "请选择一项")
        option = next((o for o in self.options if o.value == value), None)
        if option is None:
            return {}, [INVALID_CHOICE]
        if not option.allowed(context):
            return {}, [f"居民{context.age}岁，不能选择“{option.label}”"]
        result = {self.code: option.value}
        if option.detail_label:
            detail, errors = _clean_detail(option, raw.get("detail"))
            if errors:
                return {}, errors
            result[detail_key(self.code)] = detail
        return result, []

    def ends(self, value) -> bool:
        return value is not None and self.option(value).end

    def jump(self, value) -> str | None:
        return None if value is None else self.option(value).next

    def asks_detail(self, value) -> bool:
        return value is not None and bool(self.option(value).detail_label)

    def _display(self, value, detail):
        option = self.option(value)
        shown = option.label
        if option.detail_label and detail:
            shown += f"（{option.detail_label}：{detail}）"
        return shown

    def form_field(self, context):
        return RadioField(self.title, choices=self._choices(context), validate_choice=False)

    def plain_answer(self, context):
        return {"value": self.options_for(context)[0].value}


class MultiChoice(Item):
    kind = "multi"
    name = "多选题"
    widget = "choices"

    def _clean(self, value, raw, context, answers, questionnaire) -> Cleaned:
        chosen = _chosen_texts(value)
        if not chosen:
            return self._blank([], "请至少选择一项")
        known = {option.value: option for option in self.options}
        if any(v not in known or not known[v].allowed(context) for v in chosen):
            return {}, [INVALID_CHOICE]
        if len(chosen) > 1:
            for v in chosen:
                if known[v].exclusive:
                    return {}, [f"“{known[v].label}”不能与其他选项同时选择"]
        return {self.code: [o.value for o in self.options if o.value in chosen]}, []

    def jump(self, value) -> str | None:
        """The ``next`` of the first chosen option (in definition order) that has one."""
        if not value:
            return None
        chosen = set(value)
        return next((o.next for o in self.options if o.value in chosen and o.next), None)

    def _display(self, value, detail):
        return "、".join(self.option(v).label for v in value)

    def form_field(self, context):
        return CheckboxField(self.title, choices=self._choices(context), validate_choice=False)

    def form_input(self, field):
        raw = getattr(field, "raw_data", None)
        return list(field.data or []) if raw is None else list(raw)

    def plain_answer(self, context):
        return {"value": [self.options_for(context)[0].value]}


class IntegerItem(Item):
    kind = "integer"
    name = "整数题"
    widget = "integer"

    def range_message(self) -> str:
        if self.minimum is not None and self.maximum is not None:
            return f"请输入{self.minimum}到{self.maximum}之间的整数"
        if self.minimum is not None:
            return f"请输入不小于{self.minimum}的整数"
        if self.maximum is not None:
            return f"请输入不大于{self.maximum}的整数"
        return "请输入整数"

    def _number(self, value) -> int | None:
        """The integer the input holds (full-width digits too), None when it is not one."""
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return value
        if re.fullmatch(r"\s*[+-]?\d{1,9}\s*", str(value)):
            return int(str(value))
        return None

    def _clean(self, value, raw, context, answers, questionnaire) -> Cleaned:
        if isinstance(value, (list, tuple)):
            value = value[0] if value else None
        if value is None or (isinstance(value, str) and not value.strip()):
            return self._blank(None, self.range_message())
        number = self._number(value)
        if number is None or not self._in_range(number):
            return {}, [self.range_message()]
        if self.role == "service_count" and number == 0 and _services_received(questionnaire, answers):
            return {}, ["已选择接受过的服务，次数不能为0"]
        return {self.code: number}, []

    def _in_range(self, number: int) -> bool:
        return (self.minimum is None or number >= self.minimum) and (self.maximum is None or number <= self.maximum)

    def form_field(self, context):
        render_kw = {"inputmode": "numeric"}
        if self.minimum is not None:
            render_kw["min"] = self.minimum
        if self.maximum is not None:
            render_kw["max"] = self.maximum
        return LenientIntegerField(self.title, render_kw=render_kw)

    def plain_answer(self, context):
        return {"value": str(self.minimum or 0)}


def _services_received(questionnaire: Questionnaire, answers: Mapping) -> bool:
    """Whether the answers chose a service other than the exclusive "no service" one."""
    services = questionnaire.role_item("services")
    chosen = answers.get(services.code) if services else None
    known = {o.value: o for o in services.options} if services else {}
    return isinstance(chosen, list) and any(v in known and not known[v].exclusive for v in chosen)


class TextItem(Item):
    kind = "text"
    name = "文字题"
    widget = "text"

    def _clean(self, value, raw, context, answers, questionnaire) -> Cleaned:
        if isinstance(value, (list, tuple)):
            value = value[0] if value else ""
        # a browser sends a textarea's line breaks as CRLF: kept as plain newlines
        text = value.replace("\r\n", "\n").replace("\r", "\n").strip() if isinstance(value, str) else ""
        if not text and self.required:
            return {}, [f"请填写{self.title}"]
        if self.max_length is not None and len(text) > self.max_length:
            return {}, [f"{self.title}不能超过{self.max_length}个字（现有{len(text)}个字）"]
        return {self.code: text}, []

    def _display(self, value, detail):
        return value or "（未填写）"

    def form_field(self, context):
        render_kw = {"maxlength": self.max_length} if self.max_length else {}
        return TextAreaField(self.title, render_kw=render_kw)


# kind (as the JSON file spells it) -> its class, in the order the loader lists them
ITEM_TYPES: dict[str, type[Item]] = {cls.kind: cls for cls in (SingleChoice, MultiChoice, IntegerItem, TextItem)}
KINDS = tuple(ITEM_TYPES)
