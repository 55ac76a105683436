/* Quality charts of the data pages, drawn with Apache ECharts (vendored under vendor/echarts, never a CDN).
   The content security policy forbids inline script: each chart is an element with data-chart and
   data-source naming a json_script block that holds its data. */
(function () {
  "use strict";

  var FONT = '"Noto Sans CJK SC","WenQuanYi Micro Hei","Microsoft YaHei",system-ui,sans-serif';
  var SERIES = ["overall", "completeness", "validity", "uniqueness", "consistency", "timeliness"];
  var COLOURS = ["#a4161a", "#0a4a9c", "#1b5e20", "#7a3e00", "#6a1b9a", "#00695c"];

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function label(iso) {
    if (!iso) { return ""; }
    var d = new Date(iso);
    return (d.getMonth() + 1) + "-" + pad(d.getDate()) + " " + pad(d.getHours()) + ":" + pad(d.getMinutes());
  }

  function trend(el, data) {
    var points = data.points || [];
    var lowest = 100;
    points.forEach(function (p) {
      SERIES.forEach(function (name) { if (p[name] !== null && p[name] < lowest) { lowest = p[name]; } });
    });
    var chart = window.echarts.init(el, null, { renderer: "svg" });
    chart.setOption({
      animation: false,
      color: COLOURS,
      textStyle: { fontFamily: FONT },
      tooltip: {
        trigger: "axis",
        valueFormatter: function (v) { return v === null || v === undefined ? "—" : v.toFixed(1); }
      },
      legend: { top: 0, textStyle: { fontFamily: FONT } },
      grid: { left: 48, right: 32, top: 48, bottom: 40 },
      xAxis: { type: "category", boundaryGap: true, axisLabel: { hideOverlap: true },
               data: points.map(function (p) { return label(p.at); }) },
      yAxis: { type: "value", max: 100, min: Math.max(0, Math.floor((lowest - 5) / 10) * 10) },
      series: SERIES.map(function (name) {
        return {
          name: data.labels[name], type: "line", symbolSize: name === "overall" ? 8 : 5, connectNulls: true,
          lineStyle: { width: name === "overall" ? 3 : 1.5 },
          data: points.map(function (p) { return p[name]; })
        };
      })
    });
    window.addEventListener("resize", function () { chart.resize(); });
    el.setAttribute("data-drawn", "true");
  }

  var KINDS = { "quality-trend": trend };

  function drawAll(root) {
    if (!window.echarts) { return; }
    (root || document).querySelectorAll("[data-chart]:not([data-drawn])").forEach(function (el) {
      var source = document.getElementById(el.getAttribute("data-source"));
      var draw = KINDS[el.getAttribute("data-chart")];
      if (source && draw) { draw(el, JSON.parse(source.textContent)); }
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { drawAll(); });
  } else {
    drawAll();
  }
  document.addEventListener("htmx:afterSettle", function (e) { drawAll(e.target); });
})();
