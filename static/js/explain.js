// Charts in fragments htmx swaps in (explanations, "Explain your rows", "Try it"): draw
// them once they are in the page (static/js/charts.js draws the page's own on load).
(function () {
  document.addEventListener("htmx:afterSwap", function (event) {
    if (window.modelgateDraw) { window.modelgateDraw(event.detail.target); }
  });
})();
