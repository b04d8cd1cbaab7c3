// Draw every Plotly figure on the page. Figures arrive as JSON in <script type="application/json">
// elements (no inline script, so a strict Content-Security-Policy holds).
(function () {
  function draw(root) {
    (root || document).querySelectorAll("[data-chart]").forEach(function (el) {
      var source = document.getElementById(el.dataset.chart);
      if (!source || !window.Plotly) { return; }
      var figure = JSON.parse(source.textContent);
      window.Plotly.newPlot(el, figure.data, figure.layout, {displaylogo: false, responsive: true,
        modeBarButtonsToRemove: ["lasso2d", "select2d"]}).then(function () {
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
