"""The rankings in a real browser: a supervisor opens the rankings with four months of results,
the funnel plot and the trend lines are drawn (ECharts canvases, no console error — the CSP
forbids inline script and style, so a violation would show here), the tooltip and the legend
work; then the drill-down to an institution and a team, and the page at a phone's size.
Screenshots go to tests/output/reports-*.png (look at them)."""
from __future__ import annotations

import random
import re
from datetime import datetime, timezone

import pytest

from app.extensions import db
from tests.browser import chromium, live_server, require_chromium, sign_in
from tests.helpers import OUTPUT_DIR
from tests.reports_support import add_results

pytestmark = pytest.mark.browser

DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}
NOW = datetime(2026, 11, 23, 2, 0, tzinfo=timezone.utc)
MONTHS = ("2026-08", "2026-09", "2026-10", "2026-11")
# institution: (probability of 满意 or better, interviews a month)
INSTITUTIONS = {
    "新墙镇卫生院": (0.95, 12), "荣家湾镇卫生院": (0.9, 12), "筻口镇卫生院": (0.85, 11), "公田镇卫生院": (0.8, 12),
    "月田镇卫生院": (0.7, 12), "黄沙街镇卫生院": (0.55, 13), "杨林乡卫生院": (0.88, 10), "张谷英镇卫生院": (0.9, 2),
}
DOCTORS = ("张伟", "李娜", "王强", "刘洋", "陈静", "杨帆", "赵敏", "黄磊", "周婷", "吴昊", "徐丽", "孙杰", "胡军",
           "朱琳", "高翔", "林峰")


def _shot(page, name: str) -> None:
    page.screenshot(path=str(OUTPUT_DIR / f"reports-{name}.png"), full_page=True)


def _results(county, make_team):
    rng = random.Random(20261123)
    doctors = iter(DOCTORS)
    for institution, (p, size) in INSTITUTIONS.items():
        teams = [make_team(county, institution, f"{next(doctors)}家庭医生团队") for _ in range(2)]
        for month in MONTHS:
            for i, team in enumerate(teams):
                count = size // 2 + (size % 2 if i == 0 else 0)
                rows = []
                for _ in range(count):
                    good = rng.random() < p
                    rows.append({
                        "satisfaction": rng.choice((4, 5)) if good else rng.choice((1, 2, 3)),
                        "flags": None if good else "dissatisfied",
                        "aware": rng.random() < 0.92, "knows_doctor": rng.random() < 0.75,
                        "service_count": rng.randint(0, 4), "effect": rng.choice((3, 4, 5)),
                        "renew": rng.random() < p,
                    })
                add_results(county, team, month, rows)


def _charts_drawn(page) -> dict:
    """What ECharts drew: the series of each chart, and whether its canvas has any ink."""
    return page.evaluate(
        """() => {
          const out = {};
          for (const id of ['funnel-chart', 'trend-chart']) {
            const el = document.getElementById(id);
            if (!el) { out[id] = null; continue; }
            const chart = window.echarts && window.echarts.getInstanceByDom(el);
            const canvas = el.querySelector('canvas');
            let ink = 0;
            if (canvas) {
              const ctx = canvas.getContext('2d');
              const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
              for (let i = 3; i < data.length; i += 16) { if (data[i] > 0) ink++; }
            }
            const option = chart ? chart.getOption() : null;
            out[id] = {
              canvas: !!canvas, ink,
              width: el.getBoundingClientRect().width, height: el.getBoundingClientRect().height,
              series: option ? option.series.map(s => ({name: s.name, type: s.type, points: s.data.length})) : [],
              selected: option && option.legend && option.legend[0].selected ? option.legend[0].selected : null,
            };
          }
          return out;
        }"""
    )


def _fits_the_width(page) -> None:
    """The page itself does not scroll sideways (wide tables scroll inside their box)."""
    sizes = page.evaluate("() => ({scroll: document.documentElement.scrollWidth, width: document.documentElement.clientWidth})")
    assert sizes["scroll"] <= sizes["width"], sizes


def test_supervisor_reads_the_rankings_and_drills_down(app, county, make_team, make_user, monkeypatch):
    require_chromium()
    OUTPUT_DIR.mkdir(exist_ok=True)
    monkeypatch.setattr("app.reports.routes.clock_now", lambda: NOW)
    _results(county, make_team)
    supervisor = make_user("sup-rank", "supervisor", county).username
    db.session.rollback()

    with live_server(app) as base, chromium() as browser:
        page = browser.new_page(viewport=DESKTOP, locale="zh-CN")
        problems = []
        # errors only (our own getImageData above earns a performance warning); the browser's
        # request for /favicon.ico, which the application does not have, is not the page's
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text} {m.location.get('url')}")
                if m.type == "error" and not (m.location.get("url") or "").endswith("/favicon.ico") else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))

        sign_in(page, base, supervisor)
        page.click("nav >> text=排名")
        page.wait_for_url(re.compile(r"/reports/rankings"))
        assert "机构排名 · 满意率 · 2026-11" in page.locator("h1").inner_text()
        # a 3-month window, as recommended for institutions
        page.select_option("select[name=window]", "3")
        page.click("#filters button[type=submit]")
        page.wait_for_url(re.compile(r"window=3"))
        page.wait_for_function("() => window.echarts && document.querySelectorAll('.chart canvas').length == 2")
        drawn = _charts_drawn(page)
        funnel, trend = drawn["funnel-chart"], drawn["trend-chart"]
        assert funnel["canvas"] and funnel["ink"] > 1000 and funnel["height"] >= 300, funnel
        assert trend["canvas"] and trend["ink"] > 1000, trend
        scatter = [s for s in funnel["series"] if s["type"] == "scatter"]
        assert sum(s["points"] for s in scatter) == len(INSTITUTIONS)
        assert {s["name"] for s in funnel["series"]} >= {"总体", "95%", "99.8%"}
        lines = [s for s in trend["series"] if s["name"] != "岳阳县"]
        assert len(lines) == len(INSTITUTIONS) and all(s["points"] == 12 for s in trend["series"])
        ranked = page.locator("#ranked tbody tr")
        assert ranked.count() == len(INSTITUTIONS) - 1
        assert page.locator("#insufficient tbody tr").count() == 1
        assert "张谷英镇卫生院" in page.locator("#insufficient").inner_text()
        assert page.locator("#ranked tbody tr").first.locator("td.rank").inner_text().strip() == "1"
        _shot(page, "01-rankings")

        # the tooltip of a point of the funnel plot: name, n and rate
        box = page.locator("#funnel-chart").bounding_box()
        point = page.evaluate(
            """() => {
              const chart = echarts.getInstanceByDom(document.getElementById('funnel-chart'));
              const series = chart.getOption().series.findIndex(s => s.type === 'scatter');
              const value = chart.getOption().series[series].data[0].value;
              return chart.convertToPixel({seriesIndex: series}, value);
            }"""
        )
        page.mouse.move(box["x"] + point[0], box["y"] + point[1])
        tip = page.locator("#funnel-chart .chart-tip")
        tip.wait_for(state="visible")
        assert re.search(r"满意率：\d+\.\d%（\d+/\d+）", tip.inner_text()), tip.inner_text()
        page.locator("#funnel-chart").screenshot(path=str(OUTPUT_DIR / "reports-02-funnel-tooltip.png"))

        # the method note opens
        page.click("details.method summary")
        assert page.locator("details.method li").first.is_visible()

        # teams over 12 months: more units than lines shown at first; the legend brings one back
        page.goto(base + "/reports/rankings?level=team&month=2026-11")
        page.wait_for_function("() => window.echarts && document.querySelectorAll('.chart canvas').length == 2")
        drawn = _charts_drawn(page)
        selected = drawn["trend-chart"]["selected"]
        hidden = [name for name, on in selected.items() if not on]
        assert len(selected) == 2 * len(INSTITUTIONS) + 1 and len(hidden) == 2 * len(INSTITUTIONS) - 10, selected
        page.evaluate(
            "name => echarts.getInstanceByDom(document.getElementById('trend-chart'))"
            ".dispatchAction({type: 'legendToggleSelect', name})", hidden[0])
        selected = _charts_drawn(page)["trend-chart"]["selected"]
        assert selected[hidden[0]] is True
        _shot(page, "03-teams")

        # drill down: an institution, then one of its teams, then the interviews
        page.goto(base + "/reports/rankings?level=institution&month=2026-11&window=3")
        page.locator("#ranked tbody tr").first.locator("a.unit-link").click()
        page.wait_for_url(re.compile(r"/reports/unit/institution/\d+"))
        page.wait_for_function("() => window.echarts && document.querySelectorAll('.chart canvas').length == 2")
        assert "第 1 名" in page.locator("#standing").inner_text()
        assert page.locator("#indicators tbody tr").count() == 10
        _shot(page, "04-institution")
        page.locator("table.ranking tbody tr a.unit-link").first.click()
        page.wait_for_url(re.compile(r"/reports/unit/team/\d+"))
        page.wait_for_function("() => window.echarts && document.querySelectorAll('.chart canvas').length == 1")
        rows = page.locator("#responses tbody tr")
        assert rows.count() >= 15
        assert re.fullmatch(r"138\*{4}\d{4}", rows.first.locator("td.phone-masked").inner_text().strip())
        _shot(page, "05-team")
        rows.first.get_by_role("link", name="查看问卷").click()
        page.wait_for_url(re.compile(r"/calls/response/\d+/view"))

        # a phone: charts stacked, the page does not scroll sideways (the table scrolls in its box)
        page.set_viewport_size(PHONE)
        page.goto(base + "/reports/rankings?level=institution&month=2026-11&window=3")
        page.wait_for_function("() => window.echarts && document.querySelectorAll('.chart canvas').length == 2")
        drawn = _charts_drawn(page)
        assert drawn["funnel-chart"]["width"] <= PHONE["width"] and drawn["funnel-chart"]["ink"] > 1000
        _fits_the_width(page)
        _shot(page, "06-rankings-phone")

        assert not problems, problems
