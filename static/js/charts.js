// Draw every Plotly figure on the page. Figures arrive as JSON in <script type="application/json">
// elements (no inline script, so a strict Content-Security-Policy holds).
(function () {
  var CONFIG = {displaylogo: false, responsive: true,
                modeBarButtonsToRemove: ["lasso2d", "select2d"]};

  // Point clouds (the SHAP beeswarm and dependence plots) use WebGL. Where WebGL cannot
  // start (no GPU, some remote desktops, headless browsers; a context that exists can still
  // fail Plotly's own set-up) Plotly leaves a notice in place of the chart: draw them again
  // as SVG, slower but the same chart.
  function plot(el, source) {
    var first = figure(source);
    return window.Plotly.newPlot(el, first.data, first.layout, CONFIG)
      .then(function () {
        if (!el.querySelector(".no-webgl")) { return; }
        var svg = figure(source);
        svg.data.forEach(function (trace) {
          if (trace.type === "scattergl") { trace.type = "scatter"; }
        });
        window.Plotly.purge(el);
        return window.Plotly.newPlot(el, svg.data, svg.layout, CONFIG);
      });
  }

  function figure(source) { return JSON.parse(source.textContent); }

  function draw(root) {
    (root || document).querySelectorAll("[data-chart]").forEach(function (el) {
      var source = document.getElementById(el.dataset.chart);
      if (!source || !window.Plotly) { return; }
      plot(el, source).then(function () {
        el.classList.add("drawn");
        if (el.dataset.clickable) {
          el.on("plotly_click", function (event) {
            var url = event.points && event.points[0] && event.points[0].customdata;
            if (url) { window.location.href = url; }
          });
        }
      });
    });
  }
  window.modelgateDraw = draw;
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { draw(); });
  } else { draw(); }
})();
