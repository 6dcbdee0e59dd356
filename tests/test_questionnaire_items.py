"""The item kind classes and the loader's tables: each kind owns its cleaning, routing, display
and form field; the loader's keys-per-kind table refuses keys in a fixed order."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from wtforms import RadioField, TextAreaField

from app.questionnaires import (
    ITEM_TYPES,
    KINDS,
    Context,
    IntegerItem,
    MultiChoice,
    Option,
    QuestionnaireError,
    SingleChoice,
    TextItem,
    load_questionnaire,
    load_questionnaires,
)
from app.questionnaires.fields import CheckboxField, LenientIntegerField
from app.questionnaires.loader import KIND_KEYS

FOLDER = Path(__file__).resolve().parent.parent / "app" / "questionnaires"
ADULT = Context(age=45)
CHILD = Context(age=4)


@pytest.fixture(scope="module")
def q():
    return load_questionnaires(FOLDER)["v1"]


def _load(tmp_path, change):
    data = json.loads((FOLDER / "v1.json").read_text(encoding="utf-8"))
    change({item["code"]: item for item in data["items"]})
    path = tmp_path / "v1.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return load_questionnaire(path)


def _error(tmp_path, change) -> str:
    with pytest.raises(QuestionnaireError) as caught:
        _load(tmp_path, change)
    return str(caught.value)


# ---------------------------------------------------------------------------
# the kind table and the classes
# ---------------------------------------------------------------------------


def test_kind_table_names_one_class_per_kind(q):
    assert KINDS == ("single", "multi", "integer", "text")
    assert ITEM_TYPES == {"single": SingleChoice, "multi": MultiChoice, "integer": IntegerItem, "text": TextItem}
    assert {code: type(q.item(code)) for code in ("identity", "services", "service_count", "suggestion")} == {
        "identity": SingleChoice, "services": MultiChoice, "service_count": IntegerItem, "suggestion": TextItem,
    }
    assert [item.kind for item in q.items] == [
        "single", "single", "single", "multi", "integer", "single", "single", "single", "text", "single",
    ]
    assert {cls.kind: cls.widget for cls in ITEM_TYPES.values()} == {
        "single": "choices", "multi": "choices", "integer": "integer", "text": "text",
    }


def test_routing_belongs_to_the_kind(q):
    identity, aware, services, count = (q.item(c) for c in ("identity", "aware", "services", "service_count"))
    assert identity.ends("unavailable") and not identity.ends("self") and not identity.ends(None)
    assert aware.jump("no") == "suggestion" and aware.jump("yes") is None and aware.jump(None) is None
    assert services.jump(["checkup", "none"]) == "satisfaction"
    assert services.jump(["checkup"]) is None and services.jump([]) is None
    assert not services.ends(["none"]) and not count.ends(3) and count.jump(3) is None
    assert identity.asks_detail("proxy_child") and not identity.asks_detail("self")
    assert not services.asks_detail(["none"])
    with pytest.raises(QuestionnaireError, match="没有选项"):
        identity.jump("forged")


def test_display_belongs_to_the_kind(q):
    assert q.item("identity").display("proxy_unable", "女儿") == "家属代答（居民因年老、疾病等原因无法回答）（与居民关系：女儿）"
    assert q.item("identity").display("self", "女儿") == "本人接听"
    assert q.item("services").display(["follow_up", "none"]) == "随访（面对面、电话或微信）、没有接受过服务"
    assert q.item("service_count").display(0) == "0"
    assert q.item("suggestion").display("") == "（未填写）"
    assert q.item("suggestion").display("多上门") == "多上门"
    for code in ("identity", "services", "service_count", "suggestion"):
        assert q.item(code).display(None) == "（未回答）"
    assert q.item("services").display([]) == "（未回答）"


def test_a_text_answer_keeps_plain_newlines(q):
    """A browser posts a textarea's line breaks as CRLF; the answer stores newlines only."""
    assert q.clean("suggestion", {"value": " 多上门\r\n开药方便些\r "}, ADULT) == ({"suggestion": "多上门\n开药方便些"}, [])


def test_form_fields_belong_to_the_kind(q):
    assert q.item("identity").form_field(ADULT).field_class is RadioField
    assert q.item("services").form_field(ADULT).field_class is CheckboxField
    count = q.item("service_count").form_field(ADULT)
    assert count.field_class is LenientIntegerField
    assert count.kwargs["render_kw"] == {"inputmode": "numeric", "min": 0, "max": 30}
    text = q.item("suggestion").form_field(ADULT)
    assert text.field_class is TextAreaField and text.kwargs["render_kw"] == {"maxlength": 500}
    choices = [c.value for c in q.item("identity").form_field(ADULT).kwargs["choices"]]
    assert choices == ["self", "proxy_unable", "unavailable"]  # the child proxy only for children
    assert [c.value for c in q.item("identity").form_field(CHILD).kwargs["choices"]][:2] == ["self", "proxy_child"]


def test_plain_answer_is_valid_for_every_item(q):
    stored = {}
    for item in q.items:
        cleaned, errors = q.clean(item.code, item.plain_answer(ADULT), ADULT)
        assert errors == [], item.code
        stored.update(cleaned)
    assert stored == {
        "identity": "self", "aware": "yes", "knows_doctor": "yes", "services": ["follow_up"],
        "service_count": 0, "effect": "very_helpful", "satisfaction": "very_satisfied", "renew": "yes",
        "suggestion": "", "wants_contact": "yes",
    }


def test_a_kind_class_can_be_built_directly():
    item = SingleChoice(code="x", title="标题", text="问？", required=False,
                        options=(Option("a", "甲", end=True), Option("b", "乙", next="z")))
    assert item.clean({"value": ""}, ADULT, {}, None) == ({"x": None}, [])
    assert item.clean({"value": "c"}, ADULT, {}, None) == ({}, ["所选选项无效，请重新选择"])
    assert item.ends("a") and item.jump("b") == "z"
    number = IntegerItem(code="n", title="次数", text="几次？", minimum=1)
    assert number.clean({"value": "0"}, ADULT, {}, None) == ({}, ["请输入不小于1的整数"])
    assert number.clean({"value": "１２"}, ADULT, {}, None) == ({"n": 12}, [])


# ---------------------------------------------------------------------------
# the loader's tables
# ---------------------------------------------------------------------------


def test_kind_keys_table_covers_each_kind_once():
    owners = [kind for group in KIND_KEYS for kind in group.kinds]
    assert sorted(owners) == sorted(KINDS)


@pytest.mark.parametrize("code, key, value, message", [
    ("aware", "minimum", 1, "题目“aware”：只有整数题可以设置 minimum/maximum"),
    ("suggestion", "maximum", 1, "题目“suggestion”：只有整数题可以设置 minimum/maximum"),
    ("services", "max_length", 10, "题目“services”：只有文字题可以设置 max_length"),
    ("service_count", "max_length", 10, "题目“service_count”：只有文字题可以设置 max_length"),
    ("service_count", "options", [{"value": "a", "label": "甲"}], "题目“service_count”：只有单选题和多选题可以设置选项"),
    ("suggestion", "max_length", 0, "题目“suggestion”的 max_length 应为正整数"),
    ("aware", "required", None, "题目“aware”的“required”应为 true 或 false"),
    ("aware", "note", 5, "题目“aware”的“note”应为文字"),
    ("service_count", "minimum", 1.5, "题目“service_count”的“minimum”应为整数"),
])
def test_kind_and_type_rules(tmp_path, code, key, value, message):
    def change(items):
        items[code][key] = value
    assert _error(tmp_path, change) == f"问卷文件 v1.json：{message}"


def test_rules_apply_in_the_order_of_the_tables(tmp_path):
    def range_and_length(items):
        items["service_count"].update(minimum=9, maximum=1, max_length=5)
    assert _error(tmp_path, range_and_length).endswith("题目“service_count”的最小值9大于最大值1")

    def length_and_options(items):
        items["suggestion"].update(max_length=0, options=[{"value": "a", "label": "甲"}])
    assert _error(tmp_path, length_and_options).endswith("题目“suggestion”的 max_length 应为正整数")

    def type_before_kind(items):
        items["aware"].update(minimum="1", max_length=3)
    assert _error(tmp_path, type_before_kind).endswith("题目“aware”的“minimum”应为整数")


def test_defaults_and_nulls(tmp_path):
    def empty_options(items):
        items["suggestion"]["options"] = []  # an empty list is not "setting" options
        items["service_count"]["options"] = None
    q = _load(tmp_path, empty_options)
    assert q.item("suggestion").options == () and q.item("service_count").options == ()
    assert q.item("suggestion").max_length == 500

    def no_limit(items):
        items["suggestion"]["max_length"] = None
    assert _load(tmp_path, no_limit).item("suggestion").max_length is None


@pytest.mark.parametrize("code, value, changes, message", [
    ("services", "none", {"end": True}, "：多选题的选项不能设置 end、detail_label 或 proxy"),
    ("services", "none", {"detail_label": "说明"}, "：多选题的选项不能设置 end、detail_label 或 proxy"),
    ("aware", "yes", {"exclusive": True}, "：只有多选题的选项可以设置 exclusive"),
    ("aware", "yes", {"end": True, "next": "renew"}, "不能同时设置 end 和 next"),
    ("aware", "yes", {"proxy": True}, "：proxy 只能用于角色为 identity 的题目"),
    ("renew", "yes", {"score": 0.5}, "的 score 应为1（是）、0（否）或 null（不清楚）"),
    ("effect", "helpful", {"score": 0}, "的 score 应为1到5的整数（5最好）或 null（说不清）"),
    ("effect", "helpful", {"score": "4"}, "的 score 应为数字或 null"),
    ("aware", "yes", {"next": " "}, "的“next”应为非空文字"),
    ("aware", "yes", {"end": None}, "的“end”应为 true 或 false"),
])
def test_option_rules(tmp_path, code, value, changes, message):
    def change(items):
        next(o for o in items[code]["options"] if o["value"] == value).update(changes)
    assert _error(tmp_path, change) == f"问卷文件 v1.json：题目“{code}”的选项“{value}”{message}"


def test_option_scores_are_floats_and_whole_numbers_pass_as_floats(tmp_path):
    def change(items):
        items["renew"]["options"][0]["score"] = 1.0
        items["effect"]["options"][0]["score"] = 5.0
    q = _load(tmp_path, change)
    assert q.item("renew").options[0].score == 1.0 and q.item("effect").options[0].score == 5.0
