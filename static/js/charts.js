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
    var first = el.modelgateFigure || figure(source);
    el.modelgateFigure = null;
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

  // Plotly.js (1.4 MB) is fetched when the first chart is about to be drawn: the URL is
  // the data-plotly of this script's tag (templates/partials/chart_scripts.html).
  var PLOTLY = document.currentScript && document.currentScript.dataset.plotly;
  var plotly = null;
  function withPlotly() {
    if (window.Plotly || !PLOTLY) { return Promise.resolve(); }
    if (!plotly) {
      plotly = new Promise(function (resolve, reject) {
        var tag = document.createElement("script");
        tag.src = PLOTLY;
        tag.onload = resolve;
        tag.onerror = reject;
        document.head.appendChild(tag);
      });
    }
    return plotly;
  }

  function render(el) {
    if (watcher) { watcher.unobserve(el); }
    var source = document.getElementById(el.dataset.chart);
    if (!source || el.dataset.plotted || el.classList.contains("drawn")) {
      return Promise.resolve();
    }
    el.dataset.plotted = "1";
    return withPlotly().then(function () {
      if (!window.Plotly) { return; }
      return plot(el, source).then(function () { done(el); });
    });
  }

  function done(el) {
    el.classList.add("drawn");
    if (el.dataset.clickable) {
      el.on("plotly_click", function (event) {
        var url = event.points && event.points[0] && event.points[0].customdata;
        if (url) { window.location.href = url; }
      });
    }
  }

  // The charts on screen are drawn first; the others when they come near it or, at the
  // latest, one at a time once the page has loaded: the page does not wait for figures
  // below the fold (the version page's five SHAP charts took 1.4 s to draw).
  var waiting = [];
  var watcher = window.IntersectionObserver && new window.IntersectionObserver(
    function (entries) {
      entries.forEach(function (entry) { if (entry.isIntersecting) { render(entry.target); } });
    }, {rootMargin: "200px 0px"});

  function drawRest() {
    var el = waiting.shift();
    if (!el) { return; }
    var next = function () { setTimeout(drawRest, 0); };
    render(el).then(next, next);
  }

  // A chart's box takes its figure's height before it is drawn: charts drawn one after
  // another would otherwise push down what is below them while a person reads or clicks
  // it (a radio button moved from under a click on the A/B test page).
  function reserve(el) {
    var source = document.getElementById(el.dataset.chart);
    if (!source) { return; }
    try { el.modelgateFigure = figure(source); } catch (e) { return; }
    var height = el.modelgateFigure.layout && el.modelgateFigure.layout.height;
    if (height) { el.style.minHeight = height + "px"; }
  }

  function draw(root) {
    (root || document).querySelectorAll("[data-chart]").forEach(function (el) {
      if (el.dataset.queued || el.classList.contains("drawn")) { return; }
      el.dataset.queued = "1";
      reserve(el);
      if (!watcher) { render(el); return; }
      watcher.observe(el);
      waiting.push(el);
    });
    if (document.readyState === "complete") { setTimeout(drawRest, 0); }
  }
  window.modelgateDraw = draw;
  window.addEventListener("load", function () { setTimeout(drawRest, 0); });
  // Content htmx swapped in (a page that updates itself while a worker runs) gets its
  // charts drawn, and its times put in words.
  document.addEventListener("htmx:afterSettle", function (event) {
    draw();
    if (window.modelgateTimes) { window.modelgateTimes(); }
  });
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { draw(); });
  } else { draw(); }
})();
