"""The versioned questionnaire: loading and validation of the JSON, skip logic, answer
cleaning, derived indicators and flags, and the per-item WTForms form."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from werkzeug.datastructures import MultiDict

from app.questionnaires import (
    FLAGS,
    Context,
    QuestionnaireError,
    load_questionnaire,
    load_questionnaires,
    opening,
)
from app.questionnaires.forms import build_form

FOLDER = Path(__file__).resolve().parent.parent / "app" / "questionnaires"
STANDARDS = json.loads((FOLDER.parent / "populations.json").read_text(encoding="utf-8"))
STANDARDS = {p["code"]: p.get("annual_services", 0) for p in STANDARDS["populations"]}

ADULT = Context(age=45, population_codes=("general",), annual_standards=STANDARDS)
CHILD = Context(age=4, population_codes=("child",), annual_standards=STANDARDS)
HYPERTENSION = Context(age=58, population_codes=("hypertension",), annual_standards=STANDARDS)
ELDERLY = Context(age=70, population_codes=("elderly",), annual_standards=STANDARDS)

# a full interview of a resident who answered everything themselves
FULL = {
    "identity": "self",
    "aware": "yes",
    "knows_doctor": "yes",
    "services": ["follow_up", "checkup"],
    "service_count": 2,
    "effect": "helpful",
    "satisfaction": "satisfied",
    "renew": "yes",
    "suggestion": "希望上门随访多一些",
    "wants_contact": "no",
}


@pytest.fixture(scope="module")
def q():
    return load_questionnaires(FOLDER)["v1"]


def v1_data() -> dict:
    return json.loads((FOLDER / "v1.json").read_text(encoding="utf-8"))


def items_by_code(data: dict) -> dict:
    return {item["code"]: item for item in data["items"]}


# ---------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------


def test_v1_loads_with_its_items_and_roles(q):
    assert q.version == "v1"
    assert [item.code for item in q.items] == [
        "identity", "aware", "knows_doctor", "services", "service_count",
        "effect", "satisfaction", "renew", "suggestion", "wants_contact",
    ]
    assert {item.role for item in q.items} == {
        "identity", "aware", "knows_doctor", "services", "service_count",
        "effect", "satisfaction", "renew", "suggestion", "wants_contact",
    }
    assert all(len(item.options) <= 9 for item in q.items)
    identity = q.item("identity")
    assert identity.option("proxy_child").max_age == 6
    assert identity.option("proxy_child").detail_label == "与居民关系"
    assert identity.option("unavailable").end
    assert [o.value for o in identity.options if o.proxy] == ["proxy_child", "proxy_unable"]
    assert q.item("services").option("none").exclusive
    count = q.item("service_count")
    assert (count.minimum, count.maximum) == (0, 30)
    assert q.item("suggestion").required is False and q.item("suggestion").max_length == 500
    assert q.item("effect").option("unsure").score is None
    assert [o.score for o in q.item("satisfaction").options] == [5, 4, 3, 2, 1]
    assert q.reference_months == 3


def test_unknown_item_is_an_error(q):
    with pytest.raises(QuestionnaireError, match="没有题目"):
        q.item("nope")
    with pytest.raises(QuestionnaireError, match="没有选项"):
        q.item("identity").option("forged")


def _drop(key):
    def change(data):
        del data[key]
    return change


def _item(code, **changes):
    def change(data):
        items_by_code(data)[code].update(changes)
    return change


def _option(code, value, **changes):
    def change(data):
        option = next(o for o in items_by_code(data)[code]["options"] if o["value"] == value)
        option.update(changes)
    return change


def _duplicate_item(data):
    data["items"].append(copy.deepcopy(data["items"][1]))


def _duplicate_option(data):
    options = items_by_code(data)["renew"]["options"]
    options.append(dict(options[0], label="另一个"))


def _too_many_options(data):
    items_by_code(data)["services"]["options"][:0] = [{"value": "extra", "label": "额外"}, {"value": "extra2", "label": "额外2"}]


def _role_twice(data):
    items_by_code(data)["renew"]["role"] = "aware"


BROKEN = [
    (_drop("version"), "缺少字段“version”"),
    (_drop("items"), "items"),
    (_drop("opening_script"), "opening_script"),
    (lambda d: d.update(version="v2"), "与文件名"),
    (lambda d: d.update(items=[]), "items"),
    (lambda d: d.update(extra=1), "未知字段"),
    (lambda d: d.update(reference_months=0), "reference_months"),
    (_duplicate_item, "编码“aware”重复"),
    (_duplicate_option, "选项值“yes”重复"),
    (_too_many_options, "超过9个"),
    (_item("aware", kind="choice"), "题型“choice”未知"),
    (_item("aware", title=""), "缺少字段“title”"),
    (_item("aware", options=[]), "必须有选项"),
    (_item("services", options=None), "必须有选项"),
    (_item("suggestion", options=[{"value": "a", "label": "甲"}]), "只有单选题和多选题"),
    (_item("aware", next="nowhere"), "跳转目标“nowhere”不存在"),
    (_item("effect", next="identity"), "只能向后跳转"),
    (_item("effect", next="effect"), "只能向后跳转"),
    (_option("aware", "no", next="identity"), "只能向后跳转"),
    (_option("aware", "no", next="missing"), "不存在"),
    (_item("service_count", minimum=10, maximum=5), "最小值10大于最大值5"),
    (_item("service_count", maximum="30"), "应为整数"),
    (_item("aware", role="boss"), "角色“boss”未知"),
    (_role_twice, "角色“aware”被题目"),
    (_item("aware", role="services"), "要求题型"),
    (_item("aware", nxt="effect"), "未知字段"),
    (_option("identity", "proxy_child", max_age=-1), "max_age"),
    (_option("aware", "yes", score=2), "score"),
    (_option("satisfaction", "satisfied", score=7), "score"),
    (_option("renew", "yes", exclusive=True), "exclusive"),
    (_option("aware", "yes", proxy=True), "proxy"),
    (_option("identity", "unavailable", next="aware"), "end 和 next"),
    (_item("aware", text="请问{nmae}签约了吗？"), "占位符“{nmae}”"),
]


@pytest.mark.parametrize("change, message", BROKEN)
def test_loader_rejects_broken_definitions(tmp_path, change, message):
    data = v1_data()
    change(data)
    path = tmp_path / "v1.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(QuestionnaireError) as caught:
        load_questionnaires(tmp_path)
    assert "v1.json" in str(caught.value)
    assert message in str(caught.value)


@pytest.mark.parametrize("content", ["{not json", "", "[1, 2]", b"\xff\xfe\x00bad"])
def test_loader_rejects_unreadable_files(tmp_path, content):
    path = tmp_path / "v1.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(QuestionnaireError, match="v1.json"):
        load_questionnaire(path)


def test_loader_needs_a_folder_with_files(tmp_path):
    with pytest.raises(QuestionnaireError, match="不存在"):
        load_questionnaires(tmp_path / "missing")
    with pytest.raises(QuestionnaireError, match="没有问卷文件"):
        load_questionnaires(tmp_path)


def test_loader_reads_every_version(tmp_path):
    for version in ("v1", "v2"):
        data = v1_data()
        data["version"] = version
        (tmp_path / f"{version}.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    (tmp_path / "readme.txt").write_text("not a questionnaire", encoding="utf-8")
    found = load_questionnaires(tmp_path)
    assert sorted(found) == ["v1", "v2"]
    assert found["v2"].version == "v2"


# ---------------------------------------------------------------------------
# skip logic
# ---------------------------------------------------------------------------


def test_full_path_in_order(q):
    assert q.first() == "identity"
    assert q.path({}) == ["identity"]
    assert q.current({}) == "identity"
    assert q.path(FULL) == [item.code for item in q.items]
    assert q.current(FULL) is None
    assert q.is_complete(FULL)
    assert not q.ended_politely(FULL)
    partial = {k: FULL[k] for k in ("identity", "aware", "knows_doctor")}
    assert q.path(partial) == ["identity", "aware", "knows_doctor", "services"]
    assert q.current(partial) == "services"
    assert not q.is_complete(partial)


def test_next_code(q):
    assert q.next_code("identity", "self") == "aware"
    assert q.next_code("identity", "unavailable") is None
    assert q.next_code("aware", "no") == "suggestion"
    assert q.next_code("services", ["follow_up"]) == "service_count"
    assert q.next_code("services", ["none"]) == "satisfaction"
    assert q.next_code("suggestion", "") == "wants_contact"
    assert q.next_code("wants_contact", "yes") is None
    with pytest.raises(QuestionnaireError):
        q.next_code("aware", "maybe")


def test_unaware_jumps_to_the_closing_items(q):
    answers = {"identity": "self", "aware": "no"}
    assert q.path(answers) == ["identity", "aware", "suggestion"]
    answers.update(suggestion="", wants_contact="yes")
    assert q.path(answers) == ["identity", "aware", "suggestion", "wants_contact"]
    assert q.is_complete(answers)
    derived = q.derive(answers, HYPERTENSION)
    assert derived.aware is False
    assert derived.services is None and derived.service_count is None and derived.satisfaction is None
    assert derived.flags == ("unaware", "wants_contact")


def test_identity_end_stops_politely(q):
    answers = {"identity": "unavailable"}
    assert q.path(answers) == ["identity"]
    assert q.current(answers) is None
    assert q.ended_politely(answers)
    assert not q.is_complete(answers)
    # answers left over from before are not on the path and do not count
    stale = dict(FULL, identity="unavailable")
    assert q.path(stale) == ["identity"]
    assert q.ended_politely(stale) and not q.is_complete(stale)
    assert q.derive(stale, ADULT).satisfaction is None
    assert q.prune(stale) == {"identity": "unavailable"}


def test_no_service_skips_count_and_effect(q):
    answers = {"identity": "self", "aware": "yes", "knows_doctor": "no", "services": ["none"]}
    assert q.path(answers) == ["identity", "aware", "knows_doctor", "services", "satisfaction"]
    answers.update(satisfaction="neutral", renew="undecided", suggestion="", wants_contact="no")
    assert q.is_complete(answers)
    derived = q.derive(answers, HYPERTENSION)
    assert derived.services == ("none",)
    assert derived.service_count == 0
    assert derived.effect is None
    assert derived.flags == ("no_service", "below_standard")


def test_prune_drops_answers_off_the_path_and_stale_details(q):
    answers = dict(FULL, identity="proxy_unable", **{"identity.detail": "女儿"})
    assert q.prune(answers) == answers
    # the caller went back and changed "aware" to no: services etc. are no longer on the path
    changed = q.prune({**answers, "aware": "no"})
    assert list(changed) == ["identity", "identity.detail", "aware", "suggestion", "wants_contact"]
    # a new identity without a detail leaves no stale relation behind
    assert "identity.detail" not in q.prune({**answers, "identity": "self"})


# ---------------------------------------------------------------------------
# clean
# ---------------------------------------------------------------------------


def test_clean_single(q):
    assert q.clean("satisfaction", {"value": "satisfied"}, ADULT) == ({"satisfaction": "satisfied"}, [])
    assert q.clean("satisfaction", {"value": ""}, ADULT) == ({}, ["请选择一项"])
    assert q.clean("satisfaction", {}, ADULT) == ({}, ["请选择一项"])
    assert q.clean("satisfaction", {"value": "ecstatic"}, ADULT) == ({}, ["所选选项无效，请重新选择"])


def test_clean_identity_details_and_age(q):
    assert q.clean("identity", {"value": "self", "detail": "本人"}, ADULT) == ({"identity": "self"}, [])
    assert q.clean("identity", {"value": "proxy_unable", "detail": " 女儿 "}, ELDERLY) == (
        {"identity": "proxy_unable", "identity.detail": "女儿"}, [])
    assert q.clean("identity", {"value": "proxy_unable", "detail": "  "}, ELDERLY) == ({}, ["请填写与居民关系"])
    assert q.clean("identity", {"value": "proxy_unable"}, ELDERLY) == ({}, ["请填写与居民关系"])
    _, errors = q.clean("identity", {"value": "proxy_unable", "detail": "老" * 21}, ELDERLY)
    assert errors == ["与居民关系不能超过20个字"]
    assert q.clean("identity", {"value": "proxy_child", "detail": "母亲"}, CHILD) == (
        {"identity": "proxy_child", "identity.detail": "母亲"}, [])
    _, errors = q.clean("identity", {"value": "proxy_child", "detail": "母亲"}, ADULT)
    assert errors == ["居民45岁，不能选择“家属代答（居民为0-6岁儿童）”"]
    assert q.clean("identity", {"value": "proxy_child", "detail": "父亲"}, Context(age=6))[1] == []
    assert q.clean("identity", {"value": "proxy_child", "detail": "父亲"}, Context(age=7))[1] != []


def test_clean_multi(q):
    assert q.clean("services", {"value": ["checkup", "follow_up", "checkup"]}, ADULT) == (
        {"services": ["follow_up", "checkup"]}, [])
    assert q.clean("services", {"value": "home_visit"}, ADULT) == ({"services": ["home_visit"]}, [])
    assert q.clean("services", {"value": ["none"]}, ADULT) == ({"services": ["none"]}, [])
    assert q.clean("services", {"value": []}, ADULT) == ({}, ["请至少选择一项"])
    assert q.clean("services", {"value": ["follow_up", "none"]}, ADULT) == (
        {}, ["“没有接受过服务”不能与其他选项同时选择"])
    assert q.clean("services", {"value": ["follow_up", "massage"]}, ADULT) == ({}, ["所选选项无效，请重新选择"])


@pytest.mark.parametrize("raw, stored", [("0", 0), ("3", 3), (" 30 ", 30), ("３", 3), (7, 7)])
def test_clean_integer_accepts(q, raw, stored):
    assert q.clean("service_count", {"value": raw}, ADULT) == ({"service_count": stored}, [])


@pytest.mark.parametrize("raw", ["", None, "31", "-1", "2.5", "三", "1_0", "3次", True, 99])
def test_clean_integer_rejects(q, raw):
    assert q.clean("service_count", {"value": raw}, ADULT) == ({}, ["请输入0到30之间的整数"])


def test_clean_count_zero_needs_no_services(q):
    with_services = {"services": ["follow_up"]}
    assert q.clean("service_count", {"value": "0"}, ADULT, with_services) == ({}, ["已选择接受过的服务，次数不能为0"])
    assert q.clean("service_count", {"value": "1"}, ADULT, with_services) == ({"service_count": 1}, [])
    assert q.clean("service_count", {"value": "0"}, ADULT, {"services": ["none"]}) == ({"service_count": 0}, [])


def test_clean_text(q):
    assert q.clean("suggestion", {"value": "  医生态度很好  "}, ADULT) == ({"suggestion": "医生态度很好"}, [])
    assert q.clean("suggestion", {"value": ""}, ADULT) == ({"suggestion": ""}, [])
    assert q.clean("suggestion", {}, ADULT) == ({"suggestion": ""}, [])
    assert q.clean("suggestion", {"value": "好" * 500}, ADULT)[1] == []
    assert q.clean("suggestion", {"value": "好" * 501}, ADULT) == ({}, ["意见建议不能超过500个字（现有501个字）"])


def test_clean_unknown_item(q):
    with pytest.raises(QuestionnaireError):
        q.clean("nope", {"value": "x"}, ADULT)


# ---------------------------------------------------------------------------
# derive, breakoff, display, render
# ---------------------------------------------------------------------------


def test_derive_full_interview(q):
    derived = q.derive(FULL, HYPERTENSION)
    assert derived.proxy is False
    assert derived.aware is True and derived.knows_doctor is True
    assert derived.services == ("follow_up", "checkup")
    assert derived.service_count == 2
    assert derived.effect == 4 and derived.satisfaction == 4
    assert derived.renew is True and derived.wants_contact is False
    assert derived.flags == ()


def test_derive_empty_and_unknown_scores(q):
    empty = q.derive({}, ADULT)
    assert empty.proxy is None and empty.aware is None and empty.services is None
    assert empty.flags == ()
    unsure = q.derive(dict(FULL, effect="unsure", renew="undecided"), ADULT)
    assert unsure.effect is None and unsure.renew is None


def test_derive_proxy(q):
    answers = {"identity": "proxy_child", "identity.detail": "母亲"}
    assert q.derive(answers, CHILD).proxy is True


@pytest.mark.parametrize(
    "context, count, flagged",
    [
        (HYPERTENSION, 0, True),   # 5 a year → 1 owed in 3 months
        (HYPERTENSION, 1, False),
        (ELDERLY, 0, False),       # 1 a year → 0 owed in 3 months
        (ADULT, 0, False),         # general population: no fixed count
        (Context(age=30, population_codes=("pregnant",), annual_standards=STANDARDS), 0, True),
        (Context(age=70, population_codes=("elderly", "diabetes"), annual_standards=STANDARDS), 0, True),
        (Context(age=70, population_codes=("elderly", "hypertension"), annual_standards={}), 0, False),
    ],
)
def test_below_standard(q, context, count, flagged):
    answers = dict(FULL, services=["none"]) if count == 0 else dict(FULL, service_count=count)
    assert ("below_standard" in q.derive(answers, context).flags) is flagged


def test_expected_services(q):
    assert q.expected_services(HYPERTENSION) == 1
    assert q.expected_services(ELDERLY) == 0
    assert q.expected_services(ADULT) == 0
    assert q.expected_services(Context(age=40, population_codes=("tuberculosis",), annual_standards=STANDARDS)) == 1
    assert q.expected_services(Context(age=40, population_codes=("x",), annual_standards={"x": 12})) == 3


def test_flags_in_order(q):
    answers = dict(FULL, services=["none"], satisfaction="very_dissatisfied", wants_contact="yes")
    del answers["service_count"], answers["effect"]
    derived = q.derive(answers, HYPERTENSION)
    assert derived.flags == ("no_service", "below_standard", "dissatisfied", "wants_contact")
    assert list(FLAGS) == ["unaware", "no_service", "below_standard", "dissatisfied", "wants_contact"]
    assert "dissatisfied" in q.derive(dict(FULL, satisfaction="dissatisfied"), ADULT).flags
    assert "dissatisfied" not in q.derive(dict(FULL, satisfaction="neutral"), ADULT).flags
    # a count of 0 reported directly also means no service
    assert "no_service" in q.derive(dict(FULL, services=["other"], service_count=0), ADULT).flags


def test_breakoff_status(q):
    assert q.breakoff_status({}) == "breakoff"
    before = {k: FULL[k] for k in ("identity", "aware", "knows_doctor", "services", "service_count", "effect")}
    assert q.breakoff_status(before) == "breakoff"
    assert q.breakoff_status(dict(before, satisfaction="satisfied")) == "partial"
    # a satisfaction answer off the path (resident turned out unaware) does not count
    assert q.breakoff_status({"identity": "self", "aware": "no", "satisfaction": "satisfied"}) == "breakoff"


def test_display(q):
    answers = dict(FULL, identity="proxy_unable", suggestion="", **{"identity.detail": "儿子"})
    rows = q.display(answers)
    assert [code for code, _title, _shown in rows] == [item.code for item in q.items]
    shown = {code: text for code, _title, text in rows}
    assert shown["identity"] == "家属代答（居民因年老、疾病等原因无法回答）（与居民关系：儿子）"
    assert shown["services"] == "随访（面对面、电话或微信）、健康体检"
    assert shown["service_count"] == "2"
    assert shown["satisfaction"] == "满意"
    assert shown["suggestion"] == "（未填写）"
    assert rows[0][1] == "接听人身份"
    assert q.display({"identity": "self"}) == [("identity", "接听人身份", "本人接听")]


def test_render_and_opening(q):
    assert q.render("{name}您好，我是{caller}") == "{name}您好，我是{caller}"
    assert q.render("{name}您好，{unknown}", name="张三") == "张三您好，{unknown}"
    assert q.render("{name}", name="{bureau}", bureau="X") == "{bureau}"  # values are not re-expanded
    assert q.render("{name.__class__} {0} {name!r}", name="张三") == "{name.__class__} {0} {name!r}"
    assert q.render("{doctor}", doctor=None) == "{doctor}"
    text = opening(q, resident="李秀英", bureau="岳阳县卫生健康局", caller="王芳",
                   institution="新墙镇卫生院", team="张伟家庭医生团队", doctor="张伟")
    assert "李秀英" in text and "岳阳县卫生健康局" in text and "王芳" in text and "3分钟" in text
    assert "{" not in text
    closing = q.render(q.closing_script, institution="新墙镇卫生院")
    assert "新墙镇卫生院" in closing and "{" not in closing
    assert "{" not in q.render(q.item("knows_doctor").note, doctor="张伟", team="张伟家庭医生团队")


# ---------------------------------------------------------------------------
# forms (need an app context and a request)
# ---------------------------------------------------------------------------


def _post(app, data):
    return app.test_request_context("/", method="POST", data=MultiDict(data))


def test_form_single_filters_choices_by_age(app, q, monkeypatch):
    monkeypatch.setitem(app.config, "WTF_CSRF_ENABLED", False)
    with _post(app, {}):
        adult = build_form(q, q.item("identity"), ADULT)
        child = build_form(q, "identity", CHILD)
    assert [c.value for c in adult.value.choices] == ["self", "proxy_unable", "unavailable"]
    assert [c.value for c in child.value.choices] == ["self", "proxy_child", "proxy_unable", "unavailable"]
    assert "detail" in adult and adult.detail.label.text == "与居民关系"
    assert 'type="radio"' in str(adult.value)


def test_form_rejects_hidden_and_forged_options(app, q, monkeypatch):
    monkeypatch.setitem(app.config, "WTF_CSRF_ENABLED", False)
    with _post(app, {"value": "proxy_child", "detail": "母亲"}):
        form = build_form(q, "identity", ADULT)
        assert not form.validate_on_submit()
        assert form.value.errors == ["居民45岁，不能选择“家属代答（居民为0-6岁儿童）”"]
        assert form.cleaned is None
    with _post(app, {"value": "boss"}):
        form = build_form(q, "identity", ADULT)
        assert not form.validate_on_submit()
        assert form.value.errors == ["所选选项无效，请重新选择"]
    with _post(app, {}):
        form = build_form(q, "satisfaction", ADULT)
        assert not form.validate_on_submit()
        assert form.value.errors == ["请选择一项"]


def test_form_single_with_detail(app, q, monkeypatch):
    monkeypatch.setitem(app.config, "WTF_CSRF_ENABLED", False)
    with _post(app, {"value": "proxy_child"}):
        form = build_form(q, "identity", CHILD)
        assert not form.validate_on_submit()
        assert form.value.errors == ["请填写与居民关系"]
    with _post(app, {"value": "proxy_child", "detail": " 母亲 "}):
        form = build_form(q, "identity", CHILD)
        assert form.validate_on_submit()
        assert form.cleaned == {"identity": "proxy_child", "identity.detail": "母亲"}


def test_form_multi(app, q):
    with _post(app, {"value": ["checkup", "follow_up"]}):
        form = build_form(q, "services", ADULT, meta={"csrf": False})
        html = str(form.value)
        assert html.count('type="checkbox"') == 8 and "没有接受过服务" in html
        assert form.validate_on_submit()
        assert form.cleaned == {"services": ["follow_up", "checkup"]}
    with _post(app, {"value": ["none", "checkup"]}):
        form = build_form(q, "services", ADULT, meta={"csrf": False})
        assert not form.validate_on_submit()
        assert form.value.errors == ["“没有接受过服务”不能与其他选项同时选择"]
    with _post(app, {}):
        form = build_form(q, "services", ADULT, meta={"csrf": False})
        assert not form.validate_on_submit()
        assert form.value.errors == ["请至少选择一项"]


@pytest.mark.parametrize("raw", ["abc", "31", "-2", ""])
def test_form_integer_errors_are_chinese(app, q, raw):
    with _post(app, {"value": raw}):
        form = build_form(q, "service_count", ADULT, meta={"csrf": False})
        assert not form.validate_on_submit()
        assert form.value.errors == ["请输入0到30之间的整数"]
        assert 'min="0"' in str(form.value) and 'max="30"' in str(form.value)


def test_form_integer_cross_check_and_success(app, q):
    answers = {"identity": "self", "aware": "yes", "knows_doctor": "yes", "services": ["home_visit"]}
    with _post(app, {"value": "0"}):
        form = build_form(q, "service_count", ADULT, answers=answers, meta={"csrf": False})
        assert not form.validate_on_submit()
        assert form.value.errors == ["已选择接受过的服务，次数不能为0"]
    with _post(app, {"value": "4"}):
        form = build_form(q, "service_count", ADULT, answers=answers, meta={"csrf": False})
        assert form.validate_on_submit()
        assert form.cleaned == {"service_count": 4}


def test_form_text(app, q):
    with _post(app, {"value": "好" * 501}):
        form = build_form(q, "suggestion", ADULT, meta={"csrf": False})
        assert not form.validate_on_submit()
        assert form.value.errors == ["意见建议不能超过500个字（现有501个字）"]
        assert 'maxlength="500"' in str(form.value)
    with _post(app, {"value": ""}):
        form = build_form(q, "suggestion", ADULT, meta={"csrf": False})
        assert form.validate_on_submit()
        assert form.cleaned == {"suggestion": ""}


def test_form_csrf_error_is_chinese(app, q):
    with _post(app, {"value": "satisfied"}):
        form = build_form(q, "satisfaction", ADULT)
        assert not form.validate_on_submit()
        assert form.cleaned is None
        assert form.csrf_token.errors == ["表单已过期或来源无效，请刷新页面后重试。"]


def test_form_prefills_the_stored_answer(app, q):
    answers = {"identity": "proxy_unable", "identity.detail": "老伴", "services": ["follow_up", "referral"]}
    with app.test_request_context("/"):
        form = build_form(q, "identity", ELDERLY, answers=answers)
        assert form.value.data == "proxy_unable" and form.detail.data == "老伴"
        assert str(form.value).count("checked") == 1
        assert '<input checked id="value-1" name="value" type="radio" value="proxy_unable">' in str(form.value)
        services = build_form(q, "services", ELDERLY, answers=answers)
        assert services.value.data == ["follow_up", "referral"]
        assert not services.is_submitted()


def test_form_with_explicit_formdata(app, q):
    with app.test_request_context("/", method="POST"):
        form = build_form(q, "renew", ADULT, formdata=MultiDict({"value": "undecided"}), meta={"csrf": False})
        assert form.validate_on_submit()
        assert form.cleaned == {"renew": "undecided"}
