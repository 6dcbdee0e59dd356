"""The flask commands: roster import, users create, demo seed (through app.test_cli_runner())."""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import func, select

from app.demo.synth import YUEYANG_COUNTIES
from app.extensions import db
from app.models import AuditLog, County, ImportBatch, Institution, Resident, Team, User
from app.core.masking import hash_id
from tests.helpers import resident_count
from tests.rosters import INSTITUTION, TEAM, Person, make_id, people, rows_of, write_csv, write_xlsx

SUMMARY = re.compile(r"^read=(\d+) imported=(\d+) updated=(\d+) unchanged=(\d+) rejected=(\d+)( deactivated=(\d+))?$")
CHINESE = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture
def team(make_county, make_team):
    return make_team(make_county("岳阳县", "430621"), INSTITUTION, TEAM)


def invoke(runner, *args, **kwargs):
    result = runner.invoke(args=[str(a) for a in args], **kwargs)
    db.session.rollback()  # see what the command committed
    return result


def summary(result) -> dict[str, int]:
    lines = [line for line in result.stdout.splitlines() if line.startswith("read=")]
    assert len(lines) == 1, result.output
    match = SUMMARY.match(lines[0])
    assert match, lines[0]
    keys = ["read", "imported", "updated", "unchanged", "rejected"]
    out = dict(zip(keys, map(int, match.groups()[:5])))
    if match.group(7) is not None:
        out["deactivated"] = int(match.group(7))
    assert out["read"] == out["imported"] + out["updated"] + out["unchanged"] + out["rejected"]
    return out


def assert_clean_failure(result, *fragments):
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)
    assert CHINESE.search(result.output)
    for fragment in fragments:
        assert fragment in result.output, result.output


# ---------------------------------------------------------------------------
# roster import
# ---------------------------------------------------------------------------


def test_import_prints_the_summary_and_the_error_report(runner, team, tmp_path):
    persons = people(4)
    rows = rows_of(persons)
    rows[3][2] = "8221234"  # landline without area code
    path = write_xlsx(tmp_path / "岳阳县花名册.xlsx", rows)

    result = invoke(runner, "roster", "import", path)

    assert result.exit_code == 0, result.output
    assert summary(result) == {"read": 4, "imported": 3, "updated": 0, "unchanged": 0, "rejected": 1}
    report_lines = [line for line in result.stdout.splitlines() if line.startswith("错误报告：")]
    assert len(report_lines) == 1
    report = Path(report_lines[0].removeprefix("错误报告："))
    assert report.suffix == ".xlsx" and report.exists() and report.with_suffix(".csv").exists()
    frame = pd.read_excel(report, dtype=str, engine="openpyxl")
    assert frame[["行号", "列", "原因"]].values.tolist() == [["7", "联系电话", "固定电话缺少区号"]]
    assert resident_count() == 3
    batch = db.session.scalar(select(ImportBatch))
    assert batch.status == "applied" and batch.created_by.startswith("cli:")

    again = invoke(runner, "roster", "import", path)
    assert again.exit_code == 0
    assert summary(again) == {"read": 4, "imported": 0, "updated": 0, "unchanged": 3, "rejected": 1}


def test_import_without_rejections_prints_no_report(runner, team, tmp_path):
    path = write_csv(tmp_path / "ok.csv", rows_of(people(2)))

    result = invoke(runner, "roster", "import", path)

    assert result.exit_code == 0, result.output
    assert summary(result)["imported"] == 2
    assert "错误报告" not in result.output
    assert result.stdout.splitlines()[0].startswith("read=")


def test_import_full_adds_deactivated_to_the_summary_line(runner, team, tmp_path):
    persons = people(3)
    assert invoke(runner, "roster", "import", write_csv(tmp_path / "a.csv", rows_of(persons))).exit_code == 0

    result = invoke(runner, "roster", "import", write_csv(tmp_path / "b.csv", rows_of(persons[:2])), "--full")

    assert result.exit_code == 0, result.output
    assert summary(result) == {"read": 2, "imported": 0, "updated": 0, "unchanged": 2, "rejected": 0, "deactivated": 1}
    assert db.session.scalar(select(func.count()).select_from(Resident).where(Resident.active.is_(False))) == 1
    assert resident_count() == 3


def test_import_dry_run_writes_nothing(runner, team, tmp_path):
    path = write_csv(tmp_path / "a.csv", rows_of(people(3)))

    result = invoke(runner, "roster", "import", path, "--dry-run")

    assert result.exit_code == 0, result.output
    assert summary(result)["imported"] == 3
    assert "预览模式：数据库未作更改。" in result.stdout
    assert resident_count() == 0
    batch = db.session.scalar(select(ImportBatch))
    assert (batch.status, batch.imported) == ("preview", 3)


def test_import_create_missing_with_county(runner, make_county, tmp_path):
    make_county("岳阳县", "430621")
    persons = people(3, institution="东塘镇中心卫生院", team="甲团队")
    persons[2].team = "乙团队"
    path = write_csv(tmp_path / "a.csv", rows_of(persons))

    result = invoke(runner, "roster", "import", path, "--county", "岳阳县", "--create-missing")

    assert result.exit_code == 0, result.output
    assert summary(result)["imported"] == 3
    assert "新建机构 1 个，新建团队 2 个" in result.stdout
    inst = db.session.scalar(select(Institution))
    assert (inst.name, inst.type) == ("东塘镇中心卫生院", "中心卫生院")
    assert sorted(db.session.scalars(select(Team.name))) == ["乙团队", "甲团队"]


@pytest.mark.parametrize(
    "content, name, fragment",
    [
        (b"PK\x03\x04 definitely not an xlsx" * 10, "broken.xlsx", "无法读取 Excel 文件"),
        (b"hello", "roster.docx", "不支持的文件类型“.docx”"),
        ("序号,备注\r\n1,2\r\n".encode("gb18030"), "noheader.csv", "未找到表头"),
    ],
    ids=["corrupt", "extension", "no-header"],
)
def test_import_of_an_unreadable_file_fails_cleanly(runner, team, tmp_path, content, name, fragment):
    path = tmp_path / name
    path.write_bytes(content)

    result = invoke(runner, "roster", "import", path)

    assert_clean_failure(result, "导入失败：", fragment)
    assert not [line for line in result.output.splitlines() if line.startswith("read=")]
    batch = db.session.scalar(select(ImportBatch))
    assert batch.status == "failed" and fragment in batch.message


def test_import_of_a_missing_file_fails_cleanly(runner, team, tmp_path):
    result = invoke(runner, "roster", "import", tmp_path / "nowhere.csv")

    assert_clean_failure(result, "导入失败：文件为空或不存在。")


def test_import_with_unknown_county_fails_cleanly(runner, team, tmp_path):
    path = write_csv(tmp_path / "a.csv", rows_of(people(2)))

    result = invoke(runner, "roster", "import", path, "--county", "火星县")

    assert_clean_failure(result, "导入失败：县区“火星县”不存在。")
    assert resident_count() == 0


def test_import_create_missing_without_county_fails_cleanly(runner, team, tmp_path):
    path = write_csv(tmp_path / "a.csv", rows_of(people(2)))

    result = invoke(runner, "roster", "import", path, "--create-missing")

    assert_clean_failure(result, "自动新建机构时必须指定县区")
    assert resident_count() == 0


# ---------------------------------------------------------------------------
# users create
# ---------------------------------------------------------------------------


def test_users_create_caller(runner, make_county):
    county = make_county("岳阳县", "430621")

    result = invoke(runner, "users", "create", "wang", "--role", "caller", "--county", "岳阳县", "--name", "王五",
                    "--password-stdin", input="secret-pass-1\n")

    assert result.exit_code == 0, result.output
    assert "已创建用户 wang（王五，调查员）" in result.output
    user = db.session.scalar(select(User).where(User.username == "wang"))
    assert (user.role, user.county_id, user.is_enabled, user.real_name) == ("caller", county.id, True, "王五")
    assert user.check_password("secret-pass-1") and not user.check_password("secret-pass-1\n")
    assert "secret-pass-1" not in user.password_hash


def test_users_create_prompts_for_the_password_twice(runner, make_county):
    make_county("岳阳县", "430621")

    result = invoke(runner, "users", "create", "zhao", "--role", "supervisor", "--county", "岳阳县", "--name", "赵六",
                    input="prompted-pw-1\nprompted-pw-1\n")

    assert result.exit_code == 0, result.output
    assert "已创建用户 zhao（赵六，县级督导）" in result.output
    assert "prompted-pw-1" not in result.output
    assert db.session.scalar(select(User).where(User.username == "zhao")).check_password("prompted-pw-1")


def test_users_create_admin_needs_no_county(runner, app):
    result = invoke(runner, "users", "create", "city", "--role", "admin", "--name", "刘七", "--password-stdin",
                    input="long-enough-1\n")

    assert result.exit_code == 0, result.output
    user = db.session.scalar(select(User))
    assert (user.username, user.role, user.county_id) == ("city", "admin", None)


@pytest.mark.parametrize(
    "args, password, message",
    [
        (["li", "--role", "caller", "--county", "岳阳县"], "short", "密码至少10位。"),
        (["li", "--role", "caller", "--county", "火星县"], "secret-pass-1", "县区“火星县”不存在。"),
        (["li", "--role", "supervisor"], "secret-pass-1", "县级督导和调查员必须指定所属县区（--county）。"),
        (["TAKEN", "--role", "caller", "--county", "岳阳县"], "secret-pass-1", "用户名“TAKEN”已存在（不区分大小写）。"),
    ],
    ids=["short-password", "unknown-county", "supervisor-without-county", "duplicate"],
)
def test_users_create_refuses_bad_input(runner, make_county, make_user, args, password, message):
    make_county("岳阳县", "430621")
    make_user("taken", "admin")

    result = invoke(runner, "users", "create", *args, "--name", "李四", "--password-stdin", input=password + "\n")

    assert_clean_failure(result, message)
    assert db.session.scalar(select(func.count()).select_from(User)) == 1


def test_users_create_rejects_an_unknown_role(runner, app):
    result = invoke(runner, "users", "create", "x", "--role", "boss", "--name", "某", "--password-stdin",
                    input="secret-pass-1\n")

    assert result.exit_code == 2
    assert db.session.scalar(select(func.count()).select_from(User)) == 0


# ---------------------------------------------------------------------------
# demo seed
# ---------------------------------------------------------------------------


@pytest.fixture
def seeded(app, runner, tmp_path, monkeypatch):
    """`demo seed --residents 500 --seed 1 --months 0` (the roster only; the simulated months are
    tested in test_demo.py), with the sample file written under tmp_path."""
    monkeypatch.setattr(app, "instance_path", str(tmp_path / "instance"))
    result = invoke(runner, "demo", "seed", "--residents", "500", "--seed", "1", "--months", "0")
    assert result.exit_code == 0, result.output
    return result


def test_demo_seed_creates_a_valid_city(app, seeded, runner, tmp_path):
    line = seeded.stdout.splitlines()[0]
    assert line.startswith("演示数据：read=500 imported=500 updated=0 unchanged=0 rejected=0；县市区 12 个，机构 167 家，")
    assert db.session.scalar(select(func.count()).select_from(County)) == 12
    assert sorted(db.session.scalars(select(County.name))) == sorted(c[0] for c in YUEYANG_COUNTIES)
    assert resident_count() == 500
    assert db.session.scalar(select(func.count()).select_from(Resident).where(Resident.active.is_(True))) == 500
    batch = db.session.scalar(select(ImportBatch))
    assert (batch.status, batch.rows_read, batch.imported, batch.rejected) == ("applied", 500, 500, 0)
    assert batch.error_report is None
    types = set(db.session.scalars(select(Institution.type)))
    assert types <= {"乡镇卫生院", "中心卫生院", "社区卫生服务中心"} and len(types) == 3
    # every resident's stored ID is masked to its last four (no region, no birth date)
    masked = db.session.scalars(select(Resident.id_masked)).all()
    assert len(masked) == 500 and all(m[:14] == "*" * 14 and len(m) == 18 for m in masked)

    sample = tmp_path / "instance" / "demo" / "岳阳县家庭医生签约居民花名册.xlsx"
    assert f"示例名册（导出格式）：{sample}" in seeded.stdout
    assert sample.exists()

    again = invoke(runner, "demo", "seed", "--residents", "500", "--seed", "1")
    assert again.exit_code == 0
    assert "数据库中已有居民数据，跳过演示数据生成。" in again.output
    assert resident_count() == 500
    assert db.session.scalar(select(func.count()).select_from(ImportBatch)) == 1


def test_demo_sample_is_a_messy_export_that_the_importer_reads(app, seeded, runner, tmp_path):
    sample = tmp_path / "instance" / "demo" / "岳阳县家庭医生签约居民花名册.xlsx"
    raw = pd.read_excel(sample, header=None, dtype=str, engine="openpyxl")
    assert raw.iloc[0, 0] == "岳阳县家庭医生签约居民花名册"  # a title above the header
    assert "居民姓名" in raw.iloc[2].tolist() and "身份证号码" in raw.iloc[2].tolist()

    result = invoke(runner, "roster", "import", sample, "--county", "岳阳县", "--create-missing")

    assert result.exit_code == 0, result.output
    counts = summary(result)
    # five typical mistakes are planted in the sample; everything else is accepted
    assert counts["read"] == 500 and counts["rejected"] == 5
    assert counts["imported"] + counts["unchanged"] == 495
    report = Path(result.stdout.split("错误报告：")[1].splitlines()[0])
    reasons = pd.read_csv(report.with_suffix(".csv"), dtype=str, encoding="utf-8-sig")["原因"].tolist()
    assert len(reasons) == 5
    for expected in ("身份证号校验位不符，可能录入有误", "固定电话缺少区号", "人群分类不在配置的词表中：高血庄", "签约日期晚于今天"):
        assert expected in reasons, reasons


def test_demo_sample_shows_the_duplicate_person_error(app, seeded, runner, tmp_path):
    sample = tmp_path / "instance" / "demo" / "岳阳县家庭医生签约居民花名册.xlsx"
    result = invoke(runner, "roster", "import", sample, "--county", "岳阳县", "--create-missing")
    report = Path(result.stdout.split("错误报告：")[1].splitlines()[0])
    reasons = pd.read_csv(report.with_suffix(".csv"), dtype=str, encoding="utf-8-sig")["原因"].tolist()
    assert any(r.startswith("与第") and "身份证号重复" in r for r in reasons), reasons


def test_demo_seed_creates_every_institution_and_team(app, seeded, runner, tmp_path):
    assert db.session.scalar(select(func.count()).select_from(Institution)) == sum(c[3] for c in YUEYANG_COUNTIES) == 167
    per_institution = dict(db.session.execute(select(Team.institution_id, func.count()).group_by(Team.institution_id)).all())
    assert len(per_institution) == 167
    assert min(per_institution.values()) >= 4 and max(per_institution.values()) <= 8

    sample = tmp_path / "instance" / "demo" / "岳阳县家庭医生签约居民花名册.xlsx"
    result = invoke(runner, "roster", "import", sample, "--county", "岳阳县")
    counts = summary(result)
    assert counts["rejected"] <= counts["read"] // 10  # mostly accepted


def test_demo_seed_rejects_zero_residents(runner, app):
    result = invoke(runner, "demo", "seed", "--residents", "0")

    assert_clean_failure(result, "居民人数必须大于0。")
    assert db.session.scalar(select(func.count()).select_from(County)) == 0


def test_import_via_cli_stores_no_clear_id(runner, team, tmp_path):
    ident = make_id("19800101", "321")
    path = write_csv(tmp_path / "a.csv", [Person("甲", ident.lower()).row()])

    result = invoke(runner, "roster", "import", path)

    assert summary(result)["imported"] == 1
    r = db.session.scalar(select(Resident))
    assert r.id_hash == hash_id(b"test-id-hash-key-0123456789", ident)
    assert r.id_masked == "*" * 14 + ident[-4:]
    audit = db.session.scalar(select(AuditLog).where(AuditLog.action == "roster.import"))
    assert audit.detail == "read=1 imported=1 updated=0 unchanged=0 rejected=0"
    assert ident not in (audit.target + audit.detail)
