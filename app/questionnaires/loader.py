"""Reading and checking questionnaire files.

What a file may contain is described by tables, read by one routine (``_checked``):
``TOP_RULES``/``ITEM_RULES``/``OPTION_RULES`` give each key's type check, error message and
default; ``KIND_KEYS`` says which kinds may set which keys (and checks them when they may);
``OPTION_REFUSALS`` and ``ROLE_SCORES`` hold what an option may not do for a kind or a role.
The cross-item checks (unique codes and roles, forward jumps, placeholders) follow.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from app.questionnaires.items import ITEM_TYPES, KINDS, Item
from app.questionnaires.model import (
    BOOLEAN_ROLES,
    MAX_OPTIONS,
    PLACEHOLDER,
    PLACEHOLDERS,
    ROLES,
    SCALE_ROLES,
    Option,
    Questionnaire,
    QuestionnaireError,
)

CODE = re.compile(r"[a-z][a-z0-9_]*")
SCRIPTS = ("opening_script", "closing_script", "polite_end_script")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_text(value) -> bool:
    return isinstance(value, str)


def _is_filled(value) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _is_bool(value) -> bool:
    return isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Rule:
    """How one key is checked: ``check`` on its value (``default`` when the key is missing;
    an explicit null passes when ``nullable``); ``message`` may name ``{where}`` and ``{key}``."""

    check: Callable[[object], bool]
    message: str
    default: object = None
    nullable: bool = False


def _filled(message="{where}缺少字段“{key}”或内容为空") -> Rule:
    return Rule(_is_filled, message)


# (key, rule) in the order they are checked; a key may appear in several tables
TOP_TEXTS = tuple((key, _filled()) for key in ("version", "title", *SCRIPTS))
TOP_RULES = (
    ("reference_months", Rule(lambda v: _is_int(v) and 1 <= v <= 12, "reference_months 应为1到12之间的整数", default=3)),
    ("items", Rule(lambda v: isinstance(v, list) and bool(v), "缺少题目列表“items”或列表为空")),
)
ITEM_TEXTS = tuple((key, _filled()) for key in ("kind", "title", "text"))
ITEM_RULES = (
    *((key, Rule(_is_int, "{where}的“{key}”应为整数", nullable=True)) for key in ("minimum", "maximum", "max_length")),
    ("required", Rule(_is_bool, "{where}的“{key}”应为 true 或 false", default=True)),
    *((key, Rule(_is_text, "{where}的“{key}”应为文字", nullable=True)) for key in ("next", "note")),
)
OPTION_RULES = (
    *((key, Rule(_is_bool, "{where}的“{key}”应为 true 或 false", default=False)) for key in ("end", "exclusive", "proxy")),
    *((key, Rule(_is_filled, "{where}的“{key}”应为非空文字", nullable=True)) for key in ("next", "detail_label")),
    ("max_age", Rule(lambda v: _is_int(v) and v >= 0, "{where}的 max_age 应为不小于0的整数", nullable=True)),
    ("score", Rule(_is_number, "{where}的 score 应为数字或 null", nullable=True)),
)

TOP_FIELDS = {"version", "title", "items", "reference_months", *SCRIPTS}
ITEM_FIELDS = {"code", "kind", "title", "text", "options", "minimum", "maximum", "max_length",
               "required", "role", "next", "note"}
OPTION_FIELDS = {"value", "label", "next", "end", "detail_label", "max_age", "exclusive", "score", "proxy"}


def _checked(raw: dict, rules, fail, where: str = "") -> dict:
    """Each ruled key's value (or default), failing on the first that breaks its rule."""
    values = {}
    for key, rule in rules:
        value = raw.get(key, rule.default)
        if not (rule.nullable and value is None) and not rule.check(value):
            fail(rule.message.format(where=where, key=key))
        values[key] = value
    return values


def _check_keys(data: dict, allowed: set, where: str, fail) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        fail(f"{where}有未知字段：{'、'.join(unknown)}")


# -- keys that only some kinds may set ---------------------------------------------------------


def _check_range(raw: dict, cls: type[Item], role, where: str, fail) -> dict:
    if raw.get("minimum") is not None and raw.get("maximum") is not None and raw["minimum"] > raw["maximum"]:
        fail(f"{where}的最小值{raw['minimum']}大于最大值{raw['maximum']}")
    return {"minimum": raw.get("minimum"), "maximum": raw.get("maximum")}


def _check_max_length(raw: dict, cls: type[Item], role, where: str, fail) -> dict:
    if raw.get("max_length") is not None and raw["max_length"] < 1:
        fail(f"{where}的 max_length 应为正整数")
    return {"max_length": raw.get("max_length", 500)}


def _check_options(raw: dict, cls: type[Item], role, where: str, fail) -> dict:
    if not isinstance(raw.get("options"), list) or not raw["options"]:
        fail(f"{where}是{cls.name}，必须有选项")
    if len(raw["options"]) > MAX_OPTIONS:
        fail(f"{where}的选项超过{MAX_OPTIONS}个（界面用数字键1-9选择）")
    options = tuple(_load_option(o, cls.kind, role, where, fail) for o in raw["options"])
    values = [o.value for o in options]
    duplicate = next((v for v in values if values.count(v) > 1), None)
    if duplicate is not None:
        fail(f"{where}的选项值“{duplicate}”重复")
    return {"options": options}


@dataclass(frozen=True)
class KindKeys:
    """Keys only ``kinds`` may set: ``check`` reads them for those kinds (returning the item's
    values); for any other kind a key that is ``present`` is refused with ``refusal``."""

    keys: tuple[str, ...]
    kinds: tuple[str, ...]
    refusal: str
    check: Callable[..., dict]
    present: Callable[[object], bool] = field(default=lambda value: value is not None)


KIND_KEYS = (
    KindKeys(("minimum", "maximum"), ("integer",), "{where}：只有整数题可以设置 minimum/maximum", _check_range),
    KindKeys(("max_length",), ("text",), "{where}：只有文字题可以设置 max_length", _check_max_length),
    KindKeys(("options",), ("single", "multi"), "{where}：只有单选题和多选题可以设置选项", _check_options, bool),
)

# what an option of a kind may not set (any of the keys truthy)
OPTION_REFUSALS = {
    "multi": (("end", "detail_label", "proxy"), "{where}：多选题的选项不能设置 end、detail_label 或 proxy"),
    "single": (("exclusive",), "{where}：只有多选题的选项可以设置 exclusive"),
}
# role -> (the scores its options may have, the message otherwise)
ROLE_SCORES = {
    **{role: ((None, 0, 1), "{where}的 score 应为1（是）、0（否）或 null（不清楚）") for role in BOOLEAN_ROLES},
    **{role: ((None, 1, 2, 3, 4, 5), "{where}的 score 应为1到5的整数（5最好）或 null（说不清）") for role in SCALE_ROLES},
}


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
    _check_keys(data, TOP_FIELDS, "问卷", fail)
    _checked(data, TOP_TEXTS, fail)
    if data["version"] != path.stem:
        fail(f"版本号“{data['version']}”与文件名“{path.stem}”不一致")
    values = _checked(data, TOP_RULES, fail)
    items = [_load_item(raw, number, fail) for number, raw in enumerate(data["items"], 1)]
    _check_codes_and_roles(items, fail)
    _check_jumps(items, fail)
    _check_placeholders([data[key] for key in SCRIPTS], items, fail)
    return Questionnaire(
        version=data["version"], title=data["title"], opening_script=data["opening_script"],
        closing_script=data["closing_script"], polite_end_script=data["polite_end_script"],
        items=tuple(items), reference_months=values["reference_months"],
    )


def _check_codes_and_roles(items: list[Item], fail) -> None:
    codes, roles = set(), {}
    for item in items:
        if item.code in codes:
            fail(f"题目编码“{item.code}”重复")
        codes.add(item.code)
        if item.role:
            if item.role in roles:
                fail(f"角色“{item.role}”被题目“{roles[item.role]}”和“{item.code}”重复使用")
            roles[item.role] = item.code


def _check_jumps(items: list[Item], fail) -> None:
    """Every ``next`` names a later item (so the questionnaire has no cycles)."""
    positions = {item.code: position for position, item in enumerate(items)}
    for position, item in enumerate(items):
        targets = [(item.next, "")] + [(o.next, f"选项“{o.value}”的") for o in item.options]
        for target, where in targets:
            if target is None:
                continue
            if target not in positions:
                fail(f"题目“{item.code}”{where}跳转目标“{target}”不存在")
            if positions[target] <= position:
                fail(f"题目“{item.code}”{where}跳转目标“{target}”在本题之前或就是本题，只能向后跳转")


def _check_placeholders(scripts: list[str], items: list[Item], fail) -> None:
    texts = scripts + [text for item in items for text in (item.title, item.text, item.note or "")]
    for text in texts:
        for name in PLACEHOLDER.findall(text):
            if name not in PLACEHOLDERS:
                fail(f"未知的占位符“{{{name}}}”，可用的有：{'、'.join(PLACEHOLDERS)}")


def _load_item(raw, number: int, fail) -> Item:
    if not isinstance(raw, dict):
        fail(f"第{number}题应为一个JSON对象")
    code = raw.get("code")
    if not isinstance(code, str) or not CODE.fullmatch(code):
        fail(f"第{number}题缺少编码“code”，或编码不是小写字母、数字和下划线")
    where = f"题目“{code}”"
    _check_keys(raw, ITEM_FIELDS, where, fail)
    _checked(raw, ITEM_TEXTS, fail, where)
    cls, role = _kind_and_role(raw, where, fail)
    values = _checked(raw, ITEM_RULES, fail, where)
    kind_values = {}
    for group in KIND_KEYS:
        if cls.kind in group.kinds:
            kind_values.update(group.check(raw, cls, role, where, fail))
        elif any(group.present(raw.get(key)) for key in group.keys):
            fail(group.refusal.format(where=where))
    return cls(
        code=code, title=raw["title"], text=raw["text"], required=values["required"], role=role,
        next=values["next"], note=values["note"], **kind_values,
    )


def _kind_and_role(raw: dict, where: str, fail) -> tuple[type[Item], str | None]:
    kind, role = raw["kind"], raw.get("role")
    if kind not in ITEM_TYPES:
        fail(f"{where}的题型“{kind}”未知，可用的有：{'、'.join(KINDS)}")
    if role is not None and role not in ROLES:
        fail(f"{where}的角色“{role}”未知，可用的有：{'、'.join(ROLES)}")
    if role is not None and ROLES[role] != kind:
        fail(f"{where}的角色“{role}”要求题型为“{ROLES[role]}”")
    return ITEM_TYPES[kind], role


def _load_option(raw, kind: str, role: str | None, where: str, fail) -> Option:
    if not isinstance(raw, dict):
        fail(f"{where}的选项应为JSON对象")
    value, label = raw.get("value"), raw.get("label")
    if not isinstance(value, str) or not CODE.fullmatch(value):
        fail(f"{where}的选项缺少“value”，或它不是小写字母、数字和下划线")
    if not isinstance(label, str) or not label.strip():
        fail(f"{where}的选项“{value}”缺少“label”")
    where = f"{where}的选项“{value}”"
    _check_keys(raw, OPTION_FIELDS, where, fail)
    values = _checked(raw, OPTION_RULES, fail, where)
    _check_option_use(raw, kind, role, where, fail)
    score = values["score"]
    return Option(
        value=value, label=label, next=values["next"], end=values["end"], detail_label=values["detail_label"],
        max_age=values["max_age"], exclusive=values["exclusive"],
        score=None if score is None else float(score), proxy=values["proxy"],
    )


def _check_option_use(raw: dict, kind: str, role: str | None, where: str, fail) -> None:
    """What an option may do depends on its item's kind and role."""
    keys, refusal = OPTION_REFUSALS.get(kind, ((), ""))
    if any(raw.get(key) for key in keys):
        fail(refusal.format(where=where))
    if raw.get("end") and raw.get("next"):
        fail(f"{where}不能同时设置 end 和 next")
    if raw.get("proxy") and role != "identity":
        fail(f"{where}：proxy 只能用于角色为 identity 的题目")
    scores, message = ROLE_SCORES.get(role, (None, ""))
    if scores is not None and raw.get("score") not in scores:
        fail(message.format(where=where))
