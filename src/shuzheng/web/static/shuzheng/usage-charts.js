/* The gateway-use chart (sharing/usage): calls and rows per group, errors on the same axis as calls.
   Data comes from the json_script block the element's data-source names (no inline script under the CSP). */
(function () {
  "use strict";
  var FONT = '"Noto Sans CJK SC","WenQuanYi Micro Hei","Microsoft YaHei",system-ui,sans-serif';

  function draw(el) {
    var data = JSON.parse(document.getElementById(el.getAttribute("data-source")).textContent);
    var chart = window.echarts.init(el, null, { renderer: "svg" });
    chart.setOption({
      animation: false,
      color: ["#0a4a9c", "#1b5e20", "#a4161a"],
      textStyle: { fontFamily: FONT },
      tooltip: { trigger: "axis" },
      legend: { data: [el.dataset.callsLabel || "calls", el.dataset.rowsLabel || "rows", el.dataset.errorsLabel || "errors"] },
      grid: { left: 60, right: 60, bottom: 60 },
      xAxis: { type: "category", data: data.keys, axisLabel: { rotate: data.keys.length > 8 ? 30 : 0 } },
      yAxis: [{ type: "value", name: el.dataset.callsLabel || "calls" }, { type: "value", name: el.dataset.rowsLabel || "rows" }],
      series: [
        { name: el.dataset.callsLabel || "calls", type: "bar", data: data.calls },
        { name: el.dataset.rowsLabel || "rows", type: "line", yAxisIndex: 1, data: data.rows },
        { name: el.dataset.errorsLabel || "errors", type: "bar", data: data.errors }
      ]
    });
    window.addEventListener("resize", function () { chart.resize(); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (!window.echarts) { return; }
    document.querySelectorAll('[data-chart="usage"]').forEach(draw);
  });
})();
