/* uPlot charts fed from json_script blocks the server renders; the batch page appends live points. */
(function () {
  "use strict";
  var D = window.Dashboard;
  var charts = {};

  function width(el) {
    return Math.max(200, Math.floor(el.getBoundingClientRect().width || 600));
  }

  function readData(id) {
    var node = document.getElementById(id);
    if (!node) return null;
    try { return JSON.parse(node.textContent); } catch (e) { return null; }
  }

  function seconds(t) {
    if (t < 120) return Math.round(t) + " s";
    if (t < 7200) return Math.round(t / 60) + " min";
    return Math.round(t / 3600) + " h";
  }

  function keepSized(name, el) {
    var resize = D.throttle(function () {
      if (charts[name]) charts[name].setSize({ width: width(el), height: charts[name].height });
    }, 200);
    window.addEventListener("resize", resize);
  }

  function progressChart() {
    var el = document.getElementById("progress-chart");
    var data = readData("progress-chart-data");
    if (!el || !data || !window.uPlot) return;
    var bar = document.querySelector('[data-testid="quorum-progress"]');
    var threshold = bar ? Number(bar.getAttribute("data-threshold")) : 67;
    var xs = data.x.slice();
    var columns = [xs, data.signed.slice(), data.accepted.slice(), xs.map(function () { return threshold; })];
    var options = {
      width: width(el),
      height: 170,
      scales: { y: { range: [0, 100] } },
      axes: [{}, { values: function (u, ticks) { return ticks.map(function (t) { return t + "%"; }); }, size: 48 }],
      series: [
        { value: function (u, v) { return v === null ? "—" : D.utc(new Date(v * 1000)); } },
        { label: "verified", stroke: "#1a7f37", width: 2, fill: "rgba(26,127,55,.12)", paths: uPlot.paths.stepped({ align: 1 }) },
        { label: "accepted", stroke: "#5fb878", width: 1.5, dash: [4, 3], paths: uPlot.paths.stepped({ align: 1 }) },
        { label: "threshold", stroke: "#1d232a", width: 1, dash: [2, 4], points: { show: false } },
      ],
    };
    if (xs.length < 2) {
      var now = Date.now() / 1000;
      columns.forEach(function (column, i) { column.push(i === 0 ? now : column[column.length - 1]); });
    }
    charts.progress = new uPlot(options, columns, el);
    charts.progressColumns = columns;
    keepSized("progress", el);
  }

  function latencyChart() {
    var el = document.getElementById("latency-chart");
    var data = readData("latency-chart-data");
    if (!el || !data || !window.uPlot || data.x.length < 2) return;
    charts.latency = new uPlot({
      width: width(el),
      height: 150,
      axes: [{}, { values: function (u, ticks) { return ticks.map(seconds); }, size: 56 }],
      series: [
        { value: function (u, v) { return v === null ? "—" : D.utc(new Date(v * 1000)); } },
        { label: "seconds from batch seen to signature", stroke: "#0969da", width: 1.5, points: { show: true, size: 5 } },
      ],
    }, [data.x, data.latency], el);
    keepSized("latency", el);
  }

  /* Append the batch's progress now (percent verified, percent verified + pending). */
  function pushProgress(signed, accepted) {
    var chart = charts.progress;
    var columns = charts.progressColumns;
    if (!chart || !columns) return;
    var last = columns[0].length - 1;
    if (columns[1][last] === signed && columns[2][last] === accepted) return;
    columns[0].push(Date.now() / 1000);
    columns[1].push(signed);
    columns[2].push(accepted);
    columns[3].push(columns[3][last]);
    chart.setData(columns);
  }

  D.charts = { pushProgress: pushProgress, all: charts };

  document.addEventListener("DOMContentLoaded", function () {
    progressChart();
    latencyChart();
  });
})();
