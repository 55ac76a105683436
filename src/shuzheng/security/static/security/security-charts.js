/* The security dashboard's traffic chart: gateway calls answered and refused per hour (stacked bars), failed
   sign-ins and bad API keys (lines, right axis), over the last 24 hours. Data comes from the json_script block
   the element's data-source names (no inline script under the CSP). */
(function () {
  "use strict";
  var FONT = '"Noto Sans CJK SC","WenQuanYi Micro Hei","Microsoft YaHei",system-ui,sans-serif';

  function draw(el) {
    var data = JSON.parse(document.getElementById(el.getAttribute("data-source")).textContent);
    var d = el.dataset;
    var names = [d.okLabel || "answered", d.refusedLabel || "refused", d.loginsLabel || "failed sign-ins",
                 d.keysLabel || "bad keys"];
    var chart = window.echarts.init(el, null, { renderer: "svg" });
    chart.setOption({
      animation: false,
      color: ["#0a4a9c", "#a4161a", "#b26a00", "#6a1b9a"],
      textStyle: { fontFamily: FONT },
      tooltip: { trigger: "axis" },
      legend: { data: names },
      grid: { left: 60, right: 60, bottom: 40 },
      xAxis: { type: "category", data: data.hours },
      yAxis: [{ type: "value", name: names[0], minInterval: 1 }, { type: "value", name: names[2], minInterval: 1 }],
      series: [
        { name: names[0], type: "bar", stack: "calls", data: data.ok },
        { name: names[1], type: "bar", stack: "calls", data: data.refused },
        { name: names[2], type: "line", yAxisIndex: 1, data: data.failed_logins },
        { name: names[3], type: "line", yAxisIndex: 1, data: data.bad_keys }
      ]
    });
    window.addEventListener("resize", function () { chart.resize(); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (!window.echarts) { return; }
    document.querySelectorAll('[data-chart="security-traffic"]').forEach(draw);
  });
})();
