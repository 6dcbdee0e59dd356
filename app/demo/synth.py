"""Synthetic but realistic roster data for a city like Yueyang (12 county-level units,
167 institutions, 4-8 teams each), vectorised with numpy so a 1.5-million-row roster is
made in seconds. Used by `flask demo seed`, the benchmarks and the tests.

IDs carry a valid GB 11643 check digit, the county's own region code, a birth date
consistent with the key populations (children are 0-6, 65+ are 65 or older...) and the
sex digit; phones are dialable mobile or 0730 landline numbers. All of it is invented.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from app.roster.normalize import id_check_digits

# (name, region code used in ID numbers, urban?, institutions)
YUEYANG_COUNTIES: list[tuple[str, str, bool, int]] = [
    ("岳阳楼区", "430602", True, 22),
    ("云溪区", "430603", False, 9),
    ("君山区", "430611", False, 10),
    ("岳阳县", "430621", False, 17),
    ("华容县", "430623", False, 17),
    ("湘阴县", "430624", False, 16),
    ("平江县", "430626", False, 24),
    ("汨罗市", "430681", False, 17),
    ("临湘市", "430682", False, 14),
    ("屈原管理区", "430671", False, 6),
    ("南湖新区", "430672", True, 7),
    ("岳阳经济技术开发区", "430673", True, 8),
]

_PLACE_FIRST = list("东西南北新长白黄杨梅桃柳石金龙凤高安永丰和平清云洞湖江河山田")
_PLACE_SECOND = list("塘湾桥港口市坪溪岭冲铺洲坡垅潭沙")
_SURNAMES = list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤")
_GIVEN = list("伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰红梅建国志文斌辉鹏飞雪琴云莲凤珍春燕海波德福林宇浩然欣怡子轩梓涵")
_MOBILE_PREFIXES = np.array(
    [130, 131, 132, 133, 135, 136, 137, 138, 139, 150, 151, 152, 153, 155, 156, 157, 158, 159, 173, 177, 180, 181, 182, 183, 186, 187, 188, 189, 191, 199]
)


@dataclass
class Unit:
    county: str
    region: str
    institution: str
    team: str
    doctor: str


def _person_names(rng: np.random.Generator, n: int) -> np.ndarray:
    surnames = np.array(_SURNAMES)[np.minimum(rng.zipf(1.3, n) - 1, len(_SURNAMES) - 1)]
    given = np.array(_GIVEN)
    first = given[rng.integers(0, len(given), n)]
    second = given[rng.integers(0, len(given), n)]
    two_chars = rng.random(n) < 0.7
    return np.char.add(np.char.add(surnames, first), np.where(two_chars, second, ""))


def person_names(rng: np.random.Generator, n: int) -> list[str]:
    """n plausible Chinese personal names (repeats possible), e.g. for demo accounts."""
    return [str(name) for name in _person_names(rng, n)]


def make_units(seed: int = 2026, counties=YUEYANG_COUNTIES) -> list[Unit]:
    """Institutions and teams for every county, names unique within their parent."""
    rng = np.random.default_rng(seed)
    units: list[Unit] = []
    places = [a + b for a in _PLACE_FIRST for b in _PLACE_SECOND]
    for county, region, urban, n_inst in counties:
        chosen = rng.choice(len(places), size=n_inst, replace=False)
        for k, idx in enumerate(chosen):
            place = places[idx]
            if urban:
                inst = f"{place}街道社区卫生服务中心"
            elif k % 5 == 0:
                inst = f"{place}镇中心卫生院"
            else:
                inst = f"{place}{'乡' if k % 4 == 3 else '镇'}卫生院"
            n_teams = int(rng.integers(4, 9))
            leaders = _person_names(rng, n_teams * 3)
            seen: set[str] = set()
            for leader in leaders:
                if len(seen) == n_teams:
                    break
                if leader in seen:
                    continue
                seen.add(leader)
                units.append(Unit(county, region, inst, f"{leader}家庭医生团队", str(leader)))
    return units


def make_roster(n: int, seed: int = 2026, today: date | None = None, units: list[Unit] | None = None) -> pd.DataFrame:
    """n residents as a clean roster with the usual Chinese column names."""
    today = today or date.today()
    rng = np.random.default_rng(seed + 1)
    units = units or make_units(seed)
    weights = rng.gamma(4.0, 1.0, len(units))
    unit_idx = rng.choice(len(units), size=n, p=weights / weights.sum())
    region = np.array([u.region for u in units])[unit_idx]

    # ages of a contracted population: many elderly, some children
    group = rng.choice(4, size=n, p=[0.07, 0.23, 0.36, 0.34])
    low = np.array([0, 7, 35, 65])[group]
    high = np.array([6, 34, 64, 95])[group]
    age_days = (low * 365.25 + rng.random(n) * ((high - low + 1) * 365.25 - 1)).astype(int)
    birth = pd.Timestamp(today) - pd.to_timedelta(age_days, unit="D")
    age = age_days / 365.25
    sex_male = rng.random(n) < 0.49

    seq = rng.integers(0, 500, n) * 2 + np.where(sex_male, 1, 0)
    prefix = pd.Series(region) + birth.strftime("%Y%m%d").to_numpy() + pd.Series(seq).astype(str).str.zfill(3)
    ids = prefix + id_check_digits(prefix)

    mobile = np.char.add(
        _MOBILE_PREFIXES[rng.integers(0, len(_MOBILE_PREFIXES), n)].astype(str),
        np.char.zfill(rng.integers(0, 100_000_000, n).astype(str), 8),
    )
    landline = np.char.add("0730", rng.integers(2_000_000, 9_000_000, n).astype(str))
    phone = np.where(rng.random(n) < 0.05, landline, mobile)

    labels = _labels(rng, age, sex_male)
    start_offset = np.minimum(rng.integers(1, 365, n), age_days)  # nobody contracts before birth
    start = pd.Timestamp(today) - pd.to_timedelta(start_offset, unit="D")
    village = np.char.add(np.array(_PLACE_FIRST)[rng.integers(0, len(_PLACE_FIRST), n)], "家村")
    group_no = rng.integers(1, 12, n).astype(str)

    return pd.DataFrame(
        {
            "县区": np.array([u.county for u in units])[unit_idx],
            "签约机构": np.array([u.institution for u in units])[unit_idx],
            "签约团队": np.array([u.team for u in units])[unit_idx],
            "签约医生": np.array([u.doctor for u in units])[unit_idx],
            "姓名": _person_names(rng, n),
            "性别": np.where(sex_male, "男", "女"),
            "身份证号": ids.to_numpy(),
            "联系电话": phone,
            "人群分类": labels,
            "签约日期": start.strftime("%Y-%m-%d").to_numpy(),
            "住址": np.char.add(np.char.add(village, group_no), "组"),
        }
    )


def _labels(rng: np.random.Generator, age: np.ndarray, male: np.ndarray) -> np.ndarray:
    n = len(age)
    r = lambda: rng.random(n)  # noqa: E731
    parts = [
        np.where(age >= 65, "65岁及以上老年人", ""),
        np.where((age >= 35) & (r() < np.where(age >= 65, 0.45, 0.18)), "高血压", ""),
        np.where((age >= 35) & (r() < np.where(age >= 65, 0.16, 0.07)), "2型糖尿病", ""),
        np.where(age < 7, "0-6岁儿童", ""),
        np.where(~male & (age >= 20) & (age < 40) & (r() < 0.06), "孕产妇", ""),
        np.where(r() < 0.03, "残疾人", ""),
        np.where((age >= 15) & (r() < 0.006), "严重精神障碍", ""),
        np.where((age >= 15) & (r() < 0.001), "肺结核", ""),
        np.where(r() < 0.06, "脱贫人口", ""),
        np.where((age >= 50) & (r() < 0.005), "计划生育特殊家庭", ""),
        np.where((age >= 65) & (r() < 0.06), "失能半失能", ""),
    ]
    out = pd.Series([""] * n, dtype=object)
    for part in parts:
        part_s = pd.Series(part, dtype=object)
        out = np.where((out != "") & (part_s != ""), out + "、" + part_s, out + part_s)
        out = pd.Series(out, dtype=object)
    return np.where(out == "", "一般人群", out)


# ---------------------------------------------------------------------------
# Messy exports: what real contract systems hand over
# ---------------------------------------------------------------------------

_FULLWIDTH = str.maketrans("0123456789", "０１２３４５６７８９")


def messify(frame: pd.DataFrame, seed: int = 7) -> pd.DataFrame:
    """Spaces, dashes, +86, full-width digits, lower-case x, mixed label separators and
    date spellings, as real exports have them. The data stays valid."""
    rng = np.random.default_rng(seed)
    out = frame.copy()
    n = len(out)
    pick = rng.integers(0, 6, n)
    phones = out["联系电话"].astype(str)
    mobile = phones.str.len() == 11
    spaced = phones.str[:3] + " " + phones.str[3:7] + " " + phones.str[7:]
    dashed = phones.str[:3] + "-" + phones.str[3:7] + "-" + phones.str[7:]
    out["联系电话"] = np.select(
        [~mobile, pick == 1, pick == 2, pick == 3, pick == 4],
        [phones.str[:4] + "-" + phones.str[4:], spaced, dashed, "+86 " + phones, phones.str.translate(_FULLWIDTH)],
        phones,
    )
    ids = out["身份证号"].astype(str)
    out["身份证号"] = np.where(ids.str.endswith("X") & (rng.random(n) < 0.5), ids.str[:17] + "x", ids)
    seps = np.array(["、", "，", ";", "/", "；"])
    out["人群分类"] = [
        s.replace("、", str(seps[k])) for s, k in zip(out["人群分类"].astype(str), rng.integers(0, len(seps), n))
    ]
    dates = pd.to_datetime(out["签约日期"])
    style = rng.integers(0, 4, n)
    out["签约日期"] = np.select(
        [style == 1, style == 2, style == 3],
        [dates.dt.strftime("%Y/%-m/%-d"), dates.dt.strftime("%Y年%-m月%-d日"), dates.dt.strftime("%Y%m%d")],
        dates.dt.strftime("%Y-%m-%d"),
    )
    return out


MESSY_HEADERS = {
    "姓名": "居民姓名",
    "身份证号": "身份证号码",
    "联系电话": "手机号码",
    "签约机构": "机构名称",
    "签约团队": "团队名称",
    "签约医生": "家庭医生",
    "签约日期": "签约时间",
    "人群分类": "重点人群",
    "住址": "现住址",
}


def write_messy_xlsx(frame: pd.DataFrame, path, title: str) -> None:
    """An export as a contract system produces it: a merged title row, a blank line, variant
    column names, institution names merged over their residents' rows, text-formatted IDs."""
    import xlsxwriter

    data = messify(frame.drop(columns=["县区"])).rename(columns=MESSY_HEADERS)
    data = data.sort_values(["机构名称", "团队名称"], kind="stable").reset_index(drop=True)
    workbook = xlsxwriter.Workbook(str(path))
    sheet = workbook.add_worksheet("签约居民")
    text = workbook.add_format({"num_format": "@"})
    bold = workbook.add_format({"bold": True, "align": "center", "font_size": 14})
    ncols = len(data.columns)
    sheet.merge_range(0, 0, 0, ncols - 1, title, bold)
    header_row = 2
    sheet.write_row(header_row, 0, list(data.columns))
    inst_col = list(data.columns).index("机构名称")
    values = data.astype(str).to_numpy()
    for i, row in enumerate(values):
        sheet.write_row(header_row + 1 + i, 0, list(row), text)
    # merge each institution's cells, as many exports do
    start = 0
    for i in range(1, len(values) + 1):
        if i == len(values) or values[i][inst_col] != values[start][inst_col]:
            if i - start > 1:
                sheet.merge_range(header_row + 1 + start, inst_col, header_row + i, inst_col, values[start][inst_col], text)
            start = i
    sheet.write(header_row + len(values) + 2, 0, f"合计：{len(values)}人")
    workbook.close()


def inject_typical_errors(frame: pd.DataFrame) -> pd.DataFrame:
    """Five rows with the mistakes real exports contain, so a new user sees the error report:
    a mistyped ID, a landline without area code, a misspelt label, a duplicated person and a
    contract date in the future."""
    out = frame.copy()
    if len(out) < 6:
        return out
    ids = out["身份证号"].astype(str)
    wrong = "0" if ids.iloc[0][17] != "0" else "1"
    out.iloc[0, out.columns.get_loc("身份证号")] = ids.iloc[0][:17] + wrong
    out.iloc[1, out.columns.get_loc("联系电话")] = "8221234"
    out.iloc[2, out.columns.get_loc("人群分类")] = "高血庄"
    out.iloc[3] = out.iloc[4]  # the same person entered twice
    out.iloc[5, out.columns.get_loc("签约日期")] = "2099-01-01"
    return out
