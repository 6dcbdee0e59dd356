"""Versioned questionnaires: loader, validator and engine (pure Python, no Flask, no database).

A questionnaire version is one JSON file in this folder (``v1.json`` …) whose ``version``
equals the file name. Items are asked in file order; ``next`` on an item or on an option
jumps forward (never backwards, so there are no cycles), and an option with ``end: true``
ends the interview politely (identity could not be established).

Answers are a JSON object keyed by item code:

* single → the option value (str); multi → list of option values in definition order;
  integer → int; text → str (stripped, "" allowed when not required); an item that is not
  required and left blank is stored as None (single/integer) or [] (multi).
* an option with ``detail_label`` (the proxy's relation to the resident) also stores the
  detail under ``"<code>.detail"``.

``Questionnaire.clean`` always returns the dict of keys to store for one item, e.g.
``{"identity": "proxy_unable", "identity.detail": "女儿"}`` or ``{"satisfaction": "satisfied"}``.
Store it with ``answers = q.prune({**answers, **cleaned})``: ``prune`` drops what is no longer
on the path (after an earlier answer was changed) and a stale ``.detail``.

An item is "answered" when its code is a key of ``answers``. Only answers on the path count
for ``derive``, ``display`` and ``breakoff_status``.

Roles tie items to indicators (at most one item per role):

* ``identity`` (single): options with ``proxy: true`` are proxy answers;
* ``aware``, ``knows_doctor``, ``renew``, ``wants_contact`` (single): option ``score``
  1 = yes, 0 = no, null = don't know (derived None);
* ``effect``, ``satisfaction`` (single): ``score`` 5..1, 5 best, null = can't say;
* ``services`` (multi): an ``exclusive`` option means "no service received"; it may skip the
  ``service_count`` item, whose derived value is then 0;
* ``service_count`` (integer): services in the reference period (``reference_months``,
  default 3); 0 is refused when services other than the exclusive one were chosen;
* ``suggestion`` (text).
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "FLAGS", "KINDS", "ROLES", "PLACEHOLDERS", "Context", "Derived", "Item", "Option",
    "Questionnaire", "QuestionnaireError", "load_questionnaire", "load_questionnaires", "opening",
]


class QuestionnaireError(ValueError):
    """A questionnaire file is broken, or the engine was asked about something it does not have."""


FLAGS: dict[str, str] = {
    "unaware": "疑似虚假签约",
    "no_service": "未接受服务",
    "below_standard": "服务次数低于标准",
    "dissatisfied": "不满意",
    "wants_contact": "要求机构联系",
}

KINDS = ("single", "multi", "integer", "text")
BOOLEAN_ROLES = ("aware", "knows_doctor", "renew", "wants_contact")
SCALE_ROLES = ("effect", "satisfaction")
# role -> the kind its item must have
ROLES = {
    "identity": "single", "aware": "single", "knows_doctor": "single", "services": "multi",
    "service_count": "integer", "effect": "single", "satisfaction": "single", "renew": "single",
    "suggestion": "text", "wants_contact": "single",
}
PLACEHOLDERS = ("name", "bureau", "caller", "institution", "team", "doctor")
MAX_OPTIONS = 9  # number keys 1-9 pick options
DETAIL_MAX_LENGTH = 20
_PLACEHOLDER = re.compile(r"\{(\w+)\}")

_TOP_FIELDS = {"version", "title", "opening_script", "closing_script", "polite_end_script", "items", "reference_months"}
_ITEM_FIELDS = {"code", "kind", "title", "text", "options", "minimum", "maximum", "max_length",
                "required", "role", "next", "note"}
_OPTION_FIELDS = {"value", "label", "next", "end", "detail_label", "max_age", "exclusive", "score", "proxy"}


@dataclass(frozen=True)
class Context:
    """What validation and derivation need to know about the resident."""

    age: int
    population_codes: tuple[str, ...] = ()
    annual_standards: Mapping[str, int] = field(default_factory=dict)  # population code -> yearly minimum


@dataclass(frozen=True)
class Option:
    value: str
    label: str
    next: str | None = None
    end: bool = False
    detail_label: str | None = None
    max_age: int | None = None
    exclusive: bool = False
    score: float | None = None
    proxy: bool = False  # identity item: the answer is given by a family member

    def allowed(self, context: Context) -> bool:
        return self.max_age is None or context.age <= self.max_age


@dataclass(frozen=True)
class Item:
    code: str
    kind: str
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


@dataclass(frozen=True)
class Derived:
    proxy: bool | None = None
    aware: bool | None = None
    knows_doctor: bool | None = None
    services: tuple[str, ...] | None = None
    service_count: int | None = None
    effect: int | None = None  # 1..5, 5 best
    satisfaction: int | None = None  # 1..5, 5 = 非常满意
    renew: bool | None = None
    wants_contact: bool | None = None
    flags: tuple[str, ...] = ()  # codes from FLAGS, in FLAGS order


def _detail_key(code: str) -> str:
    return f"{code}.detail"


@dataclass(frozen=True)
class Questionnaire:
    version: str
    title: str
    opening_script: str
    closing_script: str
    polite_end_script: str
    items: tuple[Item, ...]
    reference_months: int = 3
    _index: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "_index", {item.code: i for i, item in enumerate(self.items)})

    # -- navigation ---------------------------------------------------------------------------

    def item(self, code) -> Item:
        try:
            return self.items[self._index[code]]
        except (KeyError, TypeError):
            raise QuestionnaireError(f"问卷 {self.version} 没有题目“{code}”") from None

    def role_item(self, role: str) -> Item | None:
        return next((item for item in self.items if item.role == role), None)

    def first(self) -> str:
        return self.items[0].code

    def next_code(self, code: str, value) -> str | None:
        """The item after ``code`` answered with ``value``; None when the questionnaire is over."""
        item = self.item(code)
        if item.kind == "single" and value is not None:
            option = item.option(value)
            if option.end:
                return None
            if option.next:
                return option.next
        elif item.kind == "multi" and value:
            chosen = set(value)
            for option in item.options:
                if option.value in chosen and option.next:
                    return option.next
        if item.next:
            return item.next
        position = self._index[code] + 1
        return self.items[position].code if position < len(self.items) else None

    def path(self, answers: Mapping) -> list[str]:
        """Item codes visited from the first item following the answers, including the first
        unanswered one; stops at the end or after an answered option with ``end``."""
        codes, code = [], self.first()
        while code is not None:
            codes.append(code)
            if code not in answers:
                break
            code = self.next_code(code, answers[code])
        return codes

    def current(self, answers: Mapping) -> str | None:
        """The first unanswered item on the path; None if nothing is left to ask."""
        last = self.path(answers)[-1]
        return None if last in answers else last

    def ended_politely(self, answers: Mapping) -> bool:
        for code in self.path(answers):
            item = self.item(code)
            if item.kind == "single" and answers.get(code) is not None and item.option(answers[code]).end:
                return True
        return False

    def is_complete(self, answers: Mapping) -> bool:
        return self.current(answers) is None and not self.ended_politely(answers)

    def prune(self, answers: Mapping) -> dict:
        """Only the answers on the path (and the details their chosen options ask for)."""
        kept = {}
        for code in self.path(answers):
            if code not in answers:
                continue
            kept[code] = answers[code]
            item = self.item(code)
            if item.kind == "single" and answers[code] is not None and item.option(answers[code]).detail_label:
                if _detail_key(code) in answers:
                    kept[_detail_key(code)] = answers[_detail_key(code)]
        return kept

    # -- validation of one answer -------------------------------------------------------------

    def clean(self, code: str, raw: Mapping, context: Context, answers: Mapping | None = None) -> tuple[dict, list[str]]:
        """Check one item's form input ``raw = {"value": str | list[str], "detail": str}``.

        Returns ``(to_store, errors)``: ``to_store`` is the dict of answer keys to store
        (``{code: value}`` plus ``{code + ".detail": detail}`` when the chosen option asks for a
        detail); on errors it is ``{}`` and ``errors`` holds Chinese messages. ``answers`` (the
        answers so far) enables the cross-item check of the service count.
        """
        item = self.item(code)
        value = raw.get("value")
        cleaner = getattr(self, f"_clean_{item.kind}")
        result, errors = cleaner(item, value, raw, context, answers or {})
        return ({} if errors else result), errors

    def _clean_single(self, item, value, raw, context, answers):
        if isinstance(value, (list, tuple)):
            value = value[0] if len(value) == 1 else None
        value = (value or "").strip() if isinstance(value, str) or value is None else str(value)
        if not value:
            return ({item.code: None}, []) if not item.required else ({}, ["请选择一项"])
        option = next((o for o in item.options if o.value == value), None)
        if option is None:
            return {}, ["所选选项无效，请重新选择"]
        if not option.allowed(context):
            return {}, [f"居民{context.age}岁，不能选择“{option.label}”"]
        result = {item.code: option.value}
        if option.detail_label:
            detail = raw.get("detail")
            detail = detail.strip() if isinstance(detail, str) else ""
            if not detail:
                return {}, [f"请填写{option.detail_label}"]
            if len(detail) > DETAIL_MAX_LENGTH:
                return {}, [f"{option.detail_label}不能超过{DETAIL_MAX_LENGTH}个字"]
            result[_detail_key(item.code)] = detail
        return result, []

    def _clean_multi(self, item, value, raw, context, answers):
        if value is None:
            value = []
        elif isinstance(value, str):
            value = [value]
        chosen = {v.strip() for v in value if isinstance(v, str) and v.strip()}
        if not chosen:
            return ({item.code: []}, []) if not item.required else ({}, ["请至少选择一项"])
        known = {option.value: option for option in item.options}
        if any(v not in known or not known[v].allowed(context) for v in chosen):
            return {}, ["所选选项无效，请重新选择"]
        if len(chosen) > 1:
            for v in chosen:
                if known[v].exclusive:
                    return {}, [f"“{known[v].label}”不能与其他选项同时选择"]
        return {item.code: [o.value for o in item.options if o.value in chosen]}, []

    def _clean_integer(self, item, value, raw, context, answers):
        if isinstance(value, (list, tuple)):
            value = value[0] if value else None
        if value is None or (isinstance(value, str) and not value.strip()):
            return ({item.code: None}, []) if not item.required else ({}, [_range_message(item)])
        if isinstance(value, bool):
            return {}, [_range_message(item)]
        if isinstance(value, int):
            number = value
        elif re.fullmatch(r"\s*[+-]?\d{1,9}\s*", str(value)):
            number = int(str(value))  # also full-width digits
        else:
            return {}, [_range_message(item)]
        if (item.minimum is not None and number < item.minimum) or (item.maximum is not None and number > item.maximum):
            return {}, [_range_message(item)]
        if item.role == "service_count" and number == 0:
            services = self.role_item("services")
            chosen = answers.get(services.code) if services else None
            known = {o.value: o for o in services.options} if services else {}
            if isinstance(chosen, list) and any(v in known and not known[v].exclusive for v in chosen):
                return {}, ["已选择接受过的服务，次数不能为0"]
        return {item.code: number}, []

    def _clean_text(self, item, value, raw, context, answers):
        if isinstance(value, (list, tuple)):
            value = value[0] if value else ""
        text = value.strip() if isinstance(value, str) else ""
        if not text and item.required:
            return {}, [f"请填写{item.title}"]
        if item.max_length is not None and len(text) > item.max_length:
            return {}, [f"{item.title}不能超过{item.max_length}个字（现有{len(text)}个字）"]
        return {item.code: text}, []

    # -- results ------------------------------------------------------------------------------

    def _on_path(self, answers: Mapping) -> dict:
        return {code: answers[code] for code in self.path(answers) if code in answers}

    def expected_services(self, context: Context) -> int:
        """Services owed in the reference period: the largest yearly standard among the
        resident's populations, prorated and rounded down (hypertension 5/yr → 1 in 3 months)."""
        yearly = max((context.annual_standards.get(code, 0) or 0 for code in context.population_codes), default=0)
        return int(yearly) * self.reference_months // 12

    def derive(self, answers: Mapping, context: Context) -> Derived:
        given = self._on_path(answers)

        def chosen(role):
            item = self.role_item(role)
            if item is None or given.get(item.code) is None:
                return None, None
            return item, item.option(given[item.code])

        def yes_no(role):
            _item, option = chosen(role)
            return None if option is None or option.score is None else bool(option.score)

        def scale(role):
            _item, option = chosen(role)
            return None if option is None or option.score is None else int(option.score)

        _identity, identity = chosen("identity")
        services_item = self.role_item("services")
        services = None
        none_chosen = False
        if services_item is not None and given.get(services_item.code) is not None:
            services = tuple(given[services_item.code])
            none_chosen = any(services_item.option(v).exclusive for v in services)
        count_item = self.role_item("service_count")
        count = given.get(count_item.code) if count_item is not None else None
        if count is None and none_chosen:
            count = 0
        aware, satisfaction, wants_contact = yes_no("aware"), scale("satisfaction"), yes_no("wants_contact")
        expected = self.expected_services(context)
        raised = {
            "unaware": aware is False,
            "no_service": none_chosen or count == 0,
            "below_standard": expected >= 1 and count is not None and count < expected,
            "dissatisfied": satisfaction is not None and satisfaction <= 2,
            "wants_contact": wants_contact is True,
        }
        return Derived(
            proxy=None if identity is None else identity.proxy,
            aware=aware,
            knows_doctor=yes_no("knows_doctor"),
            services=services,
            service_count=count,
            effect=scale("effect"),
            satisfaction=satisfaction,
            renew=yes_no("renew"),
            wants_contact=wants_contact,
            flags=tuple(flag for flag in FLAGS if raised[flag]),
        )

    def breakoff_status(self, answers: Mapping) -> str:
        """For an interview that stopped early: "partial" once the satisfaction item is answered."""
        item = self.role_item("satisfaction")
        return "partial" if item is not None and self._on_path(answers).get(item.code) is not None else "breakoff"

    def display(self, answers: Mapping) -> list[tuple[str, str, str]]:
        """(code, title, answer in Chinese) for the answered items, in path order."""
        rows = []
        for code, value in self._on_path(answers).items():
            item = self.item(code)
            if value is None or value == []:
                shown = "（未回答）"
            elif item.kind == "single":
                option = item.option(value)
                shown = option.label
                detail = answers.get(_detail_key(code))
                if option.detail_label and detail:
                    shown += f"（{option.detail_label}：{detail}）"
            elif item.kind == "multi":
                shown = "、".join(item.option(v).label for v in value)
            elif item.kind == "integer":
                shown = str(value)
            else:
                shown = value or "（未填写）"
            rows.append((code, item.title, shown))
        return rows

    def render(self, template: str, **values) -> str:
        """Fill ``{name}``-style placeholders; unknown or missing ones stay visible as they are.
        Single pass, no format spec or attribute access, so values containing braces are safe."""

        def fill(match):
            value = values.get(match.group(1))
            return match.group(0) if value is None else str(value)

        return _PLACEHOLDER.sub(fill, template or "")


def _range_message(item: Item) -> str:
    if item.minimum is not None and item.maximum is not None:
        return f"请输入{item.minimum}到{item.maximum}之间的整数"
    if item.minimum is not None:
        return f"请输入不小于{item.minimum}的整数"
    if item.maximum is not None:
        return f"请输入不大于{item.maximum}的整数"
    return "请输入整数"


def opening(q: Questionnaire, *, resident: str, bureau: str, caller: str, institution: str, team: str, doctor: str) -> str:
    return q.render(q.opening_script, name=resident, bureau=bureau, caller=caller,
                    institution=institution, team=team, doctor=doctor)


# -- loading ----------------------------------------------------------------------------------


def load_questionnaires(directory) -> dict[str, Questionnaire]:
    """Every ``*.json`` file of ``directory``, keyed by version (which must equal the file stem)."""
    folder = Path(directory)
    if not folder.is_dir():
        raise QuestionnaireError(f"问卷目录不存在：{folder}")
    found = {path.stem: load_questionnaire(path) for path in sorted(folder.glob("*.json"))}
    if not found:
        raise QuestionnaireError(f"问卷目录中没有问卷文件（*.json）：{folder}")
    return found


def load_questionnaire(path) -> Questionnaire:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise QuestionnaireError(f"问卷文件 {path.name} 无法读取或不是有效的JSON：{exc}") from exc

    def fail(message: str):
        raise QuestionnaireError(f"问卷文件 {path.name}：{message}")

    if not isinstance(data, dict):
        fail("内容应为一个JSON对象")
    _check_keys(data, _TOP_FIELDS, "问卷", fail)
    for key in ("version", "title", "opening_script", "closing_script", "polite_end_script"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            fail(f"缺少字段“{key}”或内容为空")
    if data["version"] != path.stem:
        fail(f"版本号“{data['version']}”与文件名“{path.stem}”不一致")
    months = data.get("reference_months", 3)
    if not _is_int(months) or not 1 <= months <= 12:
        fail("reference_months 应为1到12之间的整数")
    if not isinstance(data.get("items"), list) or not data["items"]:
        fail("缺少题目列表“items”或列表为空")
    items = [_load_item(raw, number, fail) for number, raw in enumerate(data["items"], 1)]

    positions, roles = {}, {}
    for position, item in enumerate(items):
        if item.code in positions:
            fail(f"题目编码“{item.code}”重复")
        positions[item.code] = position
        if item.role:
            if item.role in roles:
                fail(f"角色“{item.role}”被题目“{roles[item.role]}”和“{item.code}”重复使用")
            roles[item.role] = item.code
    for position, item in enumerate(items):
        targets = [(item.next, "")] + [(o.next, f"选项“{o.value}”的") for o in item.options]
        for target, where in targets:
            if target is None:
                continue
            if target not in positions:
                fail(f"题目“{item.code}”{where}跳转目标“{target}”不存在")
            if positions[target] <= position:
                fail(f"题目“{item.code}”{where}跳转目标“{target}”在本题之前或就是本题，只能向后跳转")
    for text in [data[k] for k in ("opening_script", "closing_script", "polite_end_script")] + [
        t for item in items for t in (item.title, item.text, item.note or "")
    ]:
        for name in _PLACEHOLDER.findall(text):
            if name not in PLACEHOLDERS:
                fail(f"未知的占位符“{{{name}}}”，可用的有：{'、'.join(PLACEHOLDERS)}")
    return Questionnaire(
        version=data["version"], title=data["title"], opening_script=data["opening_script"],
        closing_script=data["closing_script"], polite_end_script=data["polite_end_script"],
        items=tuple(items), reference_months=months,
    )


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_keys(data: dict, allowed: set, where: str, fail) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        fail(f"{where}有未知字段：{'、'.join(unknown)}")


def _load_item(raw, number: int, fail) -> Item:
    if not isinstance(raw, dict):
        fail(f"第{number}题应为一个JSON对象")
    code = raw.get("code")
    if not isinstance(code, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", code):
        fail(f"第{number}题缺少编码“code”，或编码不是小写字母、数字和下划线")
    where = f"题目“{code}”"
    _check_keys(raw, _ITEM_FIELDS, where, fail)
    for key in ("kind", "title", "text"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            fail(f"{where}缺少字段“{key}”或内容为空")
    kind, role = raw["kind"], raw.get("role")
    if kind not in KINDS:
        fail(f"{where}的题型“{kind}”未知，可用的有：{'、'.join(KINDS)}")
    if role is not None and role not in ROLES:
        fail(f"{where}的角色“{role}”未知，可用的有：{'、'.join(ROLES)}")
    if role is not None and ROLES[role] != kind:
        fail(f"{where}的角色“{role}”要求题型为“{ROLES[role]}”")
    for key in ("minimum", "maximum", "max_length"):
        if raw.get(key) is not None and not _is_int(raw[key]):
            fail(f"{where}的“{key}”应为整数")
    if not isinstance(raw.get("required", True), bool):
        fail(f"{where}的“required”应为 true 或 false")
    for key in ("next", "note"):
        if raw.get(key) is not None and not isinstance(raw[key], str):
            fail(f"{where}的“{key}”应为文字")
    if kind != "integer" and (raw.get("minimum") is not None or raw.get("maximum") is not None):
        fail(f"{where}：只有整数题可以设置 minimum/maximum")
    if kind == "integer" and raw.get("minimum") is not None and raw.get("maximum") is not None \
            and raw["minimum"] > raw["maximum"]:
        fail(f"{where}的最小值{raw['minimum']}大于最大值{raw['maximum']}")
    if kind != "text" and raw.get("max_length") is not None:
        fail(f"{where}：只有文字题可以设置 max_length")
    if kind == "text" and raw.get("max_length") is not None and raw["max_length"] < 1:
        fail(f"{where}的 max_length 应为正整数")

    options = ()
    if kind in ("single", "multi"):
        if not isinstance(raw.get("options"), list) or not raw["options"]:
            fail(f"{where}是{'单选' if kind == 'single' else '多选'}题，必须有选项")
        if len(raw["options"]) > MAX_OPTIONS:
            fail(f"{where}的选项超过{MAX_OPTIONS}个（界面用数字键1-9选择）")
        options = tuple(_load_option(o, kind, role, where, fail) for o in raw["options"])
        values = [o.value for o in options]
        duplicate = next((v for v in values if values.count(v) > 1), None)
        if duplicate is not None:
            fail(f"{where}的选项值“{duplicate}”重复")
    elif raw.get("options"):
        fail(f"{where}：只有单选题和多选题可以设置选项")
    return Item(
        code=code, kind=kind, title=raw["title"], text=raw["text"], options=options,
        minimum=raw.get("minimum"), maximum=raw.get("maximum"),
        max_length=raw.get("max_length", 500 if kind == "text" else None),
        required=raw.get("required", True), role=role, next=raw.get("next"), note=raw.get("note"),
    )


def _load_option(raw, kind: str, role: str | None, where: str, fail) -> Option:
    if not isinstance(raw, dict):
        fail(f"{where}的选项应为JSON对象")
    value, label = raw.get("value"), raw.get("label")
    if not isinstance(value, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", value):
        fail(f"{where}的选项缺少“value”，或它不是小写字母、数字和下划线")
    if not isinstance(label, str) or not label.strip():
        fail(f"{where}的选项“{value}”缺少“label”")
    where = f"{where}的选项“{value}”"
    _check_keys(raw, _OPTION_FIELDS, where, fail)
    for key in ("end", "exclusive", "proxy"):
        if not isinstance(raw.get(key, False), bool):
            fail(f"{where}的“{key}”应为 true 或 false")
    for key in ("next", "detail_label"):
        if raw.get(key) is not None and (not isinstance(raw[key], str) or not raw[key].strip()):
            fail(f"{where}的“{key}”应为非空文字")
    max_age, score = raw.get("max_age"), raw.get("score")
    if max_age is not None and (not _is_int(max_age) or max_age < 0):
        fail(f"{where}的 max_age 应为不小于0的整数")
    if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float))):
        fail(f"{where}的 score 应为数字或 null")
    if kind == "multi" and (raw.get("end") or raw.get("detail_label") or raw.get("proxy")):
        fail(f"{where}：多选题的选项不能设置 end、detail_label 或 proxy")
    if kind == "single" and raw.get("exclusive"):
        fail(f"{where}：只有多选题的选项可以设置 exclusive")
    if raw.get("end") and raw.get("next"):
        fail(f"{where}不能同时设置 end 和 next")
    if raw.get("proxy") and role != "identity":
        fail(f"{where}：proxy 只能用于角色为 identity 的题目")
    if role in BOOLEAN_ROLES and score not in (None, 0, 1):
        fail(f"{where}的 score 应为1（是）、0（否）或 null（不清楚）")
    if role in SCALE_ROLES and score is not None and score not in (1, 2, 3, 4, 5):
        fail(f"{where}的 score 应为1到5的整数（5最好）或 null（说不清）")
    return Option(
        value=value, label=label, next=raw.get("next"), end=raw.get("end", False),
        detail_label=raw.get("detail_label"), max_age=max_age, exclusive=raw.get("exclusive", False),
        score=None if score is None else float(score), proxy=raw.get("proxy", False),
    )
