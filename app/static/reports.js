/* The rankings' charts, drawn with Apache ECharts from the JSON blocks the page carries (the
   Content-Security-Policy allows no inline script and no inline style attribute, so tooltips
   are plain text with classes only):

   - #funnel-chart from #funnel-data: each unit's observed rate against its n, the overall rate
     and the 95% / 99.8% control limits (Spiegelhalter 2005), points coloured by position;
   - #trend-chart from #trend-data: each unit's observed rate per month, and the total; with
     many units only the best and worst few show at first, the legend toggles the others. */
(function () {
  "use strict";

  var POSITION_COLORS = {
    high99: "#1b5e20", high95: "#66bb6a", within: "#78909c", low95: "#fb8c00", low99: "#c62828"
  };
  var POSITION_ORDER = ["high99", "high95", "within", "low95", "low99"];
  var FONT = '"Microsoft YaHei", "PingFang SC", "WenQuanYi Micro Hei", "Noto Sans CJK SC", sans-serif';

  function readJson(id) {
    var el = document.getElementById(id);
    if (!el) { return null; }
    try { return JSON.parse(el.textContent); } catch (e) { return null; }
  }

  function escapeHtml(text) {
    return String(text).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }

  function pct(value) {
    return value === null || value === undefined ? "—" : (value * 100).toFixed(1) + "%";
  }

  function percentAxis(name) {
    return {
      type: "value", name: name, nameTextStyle: { align: "left" },
      min: function (range) { return Math.max(0, Math.floor((range.min - 2) / 10) * 10); },
      max: 100,
      axisLabel: { formatter: "{value}%" },
      splitLine: { lineStyle: { color: "#eef2f6" } }
    };
  }

  function base() {
    return {
      textStyle: { fontFamily: FONT },
      animation: false,
      grid: { left: 12, right: 24, top: 40, bottom: 70, containLabel: true },
      tooltip: { confine: true, className: "chart-tip", borderColor: "#bcccdc" }
    };
  }

  var charts = [];

  function drawFunnel() {
    var data = readJson("funnel-data");
    var el = document.getElementById("funnel-chart");
    if (!data || !el || !data.points.length) { return; }
    // each point arrives as a list in the order of data.fields, its parent as an index
    data.points = data.points.map(function (values) {
      var unit = {};
      data.fields.forEach(function (name, i) { unit[name] = values[i]; });
      unit.parent = data.parents[unit.parent];
      return unit;
    });
    var chart = window.echarts.init(el, null, { renderer: "canvas" });
    var limits = data.limits;
    var nMax = limits.length ? limits[limits.length - 1].n : 1;

    // the lines are named on the chart (at their right end), the legend is for the positions
    function limitLine(key, label) {
      var color = key.indexOf("99") >= 0 ? "#c62828" : "#fb8c00";
      return {
        name: label, type: "line", showSymbol: false, silent: true, z: 1,
        lineStyle: { width: 1, type: key.indexOf("99") >= 0 ? "dotted" : "dashed", color: color },
        itemStyle: { color: color },
        endLabel: { show: key.indexOf("lo") === 0, formatter: label, color: color, fontSize: 11 },
        data: limits.map(function (row) { return [row.n, row[key] * 100]; })
      };
    }

    var series = [
      {
        name: "总体", type: "line", showSymbol: false, silent: true, z: 1,
        lineStyle: { width: 2, color: "#0f4c81" }, itemStyle: { color: "#0f4c81" },
        endLabel: { show: true, formatter: "总体 " + pct(data.overall), color: "#0f4c81", fontSize: 11 },
        data: [[limits.length ? limits[0].n : 1, data.overall * 100], [nMax, data.overall * 100]]
      },
      limitLine("lo95", "95%"),
      limitLine("hi95", "95%"),
      limitLine("lo99", "99.8%"),
      limitLine("hi99", "99.8%")
    ];
    POSITION_ORDER.forEach(function (code) {
      var points = data.points.filter(function (p) { return p.position === code; });
      if (!points.length) { return; }
      series.push({
        name: data.positions[code], type: "scatter", symbolSize: 9, z: 3,
        itemStyle: { color: POSITION_COLORS[code], borderColor: "#fff", borderWidth: 1 },
        data: points.map(function (p) { return { value: [p.n, p.rate * 100], unit: p }; })
      });
    });

    var option = base();
    option.grid.right = 78;  // room for the lines' names
    option.legend = { bottom: 0, type: "scroll", data: POSITION_ORDER.filter(function (c) {
      return data.points.some(function (p) { return p.position === c; });
    }).map(function (c) { return data.positions[c]; }) };
    option.tooltip.trigger = "item";
    option.tooltip.formatter = function (params) {
      var unit = params.data && params.data.unit;
      if (!unit) { return ""; }
      return "<strong>" + escapeHtml(unit.name) + "</strong>" +
        (unit.parent ? "<br>" + escapeHtml(unit.parent) : "") +
        "<br>" + escapeHtml(data.indicator) + "：" + pct(unit.rate) + "（" + unit.successes + "/" + unit.n + "）" +
        "<br>调整后：" + pct(unit.adjusted) + (unit.rank ? "，第 " + unit.rank + " 名" : "，样本不足") +
        "<br>" + escapeHtml(params.seriesName);
    };
    option.xAxis = {
      type: "value", name: "有效回答数 n", nameLocation: "middle", nameGap: 28, min: 0, minInterval: 1,
      splitLine: { lineStyle: { color: "#eef2f6" } }
    };
    option.yAxis = percentAxis(data.indicator);
    option.series = series;
    chart.setOption(option);
    charts.push(chart);
  }

  function drawTrend() {
    var data = readJson("trend-data");
    var el = document.getElementById("trend-chart");
    if (!data || !el) { return; }
    var chart = window.echarts.init(el, null, { renderer: "canvas" });
    var selected = {};
    var series = data.series.map(function (s) {
      selected[s.name] = s.shown;
      return {
        name: s.name, type: "line", connectNulls: false, symbolSize: 5, emphasis: { focus: "series" },
        data: s.values.map(function (v, i) { return { value: v === null ? null : v * 100, n: s.n[i] }; })
      };
    });
    series.push({
      name: data.total.name, type: "line", connectNulls: false, symbol: "none", z: 5,
      lineStyle: { width: 3, type: "dashed", color: "#0f4c81" }, itemStyle: { color: "#0f4c81" },
      data: data.total.values.map(function (v, i) { return { value: v === null ? null : v * 100, n: data.total.n[i] }; })
    });
    selected[data.total.name] = true;

    var option = base();
    option.legend = { bottom: 0, type: "scroll", selected: selected };
    option.tooltip.trigger = "axis";
    option.tooltip.formatter = function (params) {
      if (!params.length) { return ""; }
      var rows = params.filter(function (p) { return p.data && p.data.value !== null && p.data.value !== undefined; })
        .sort(function (a, b) { return b.data.value - a.data.value; });
      var lines = rows.slice(0, 15).map(function (p) {
        return escapeHtml(p.seriesName) + "：" + p.data.value.toFixed(1) + "%（n=" + p.data.n + "）";
      });
      if (rows.length > 15) { lines.push("……另有 " + (rows.length - 15) + " 个"); }
      return "<strong>" + escapeHtml(params[0].axisValue) + "</strong><br>" + (lines.length ? lines.join("<br>") : "无数据");
    };
    option.xAxis = { type: "category", data: data.months, boundaryGap: false, axisLabel: { hideOverlap: true } };
    option.yAxis = percentAxis(data.indicator);
    option.series = series;
    chart.setOption(option);
    charts.push(chart);
  }

  function start() {
    if (!window.echarts) { return; }
    drawFunnel();
    drawTrend();
    var pending = null;
    window.addEventListener("resize", function () {
      if (pending) { window.clearTimeout(pending); }
      pending = window.setTimeout(function () { charts.forEach(function (c) { c.resize(); }); }, 100);
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
}());
