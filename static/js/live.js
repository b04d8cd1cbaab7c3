// Refresh a fragment of the page while something runs (a rollout): the element with
// data-refresh is replaced by the fragment its URL returns, and its charts are redrawn.
(function () {
  var el = document.querySelector("[data-refresh]");
  if (!el) { return; }
  var seconds = parseFloat(el.dataset.refreshSeconds || "3");
  function tick() {
    fetch(el.dataset.refresh, {headers: {"X-Requested-With": "fetch"}, credentials: "same-origin"})
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (html !== null) {
          el.innerHTML = html;
          if (window.modelgateDraw) { window.modelgateDraw(el); }
          if (window.modelgateTimes) { window.modelgateTimes(el); }
        }
        if (!el.querySelector("[data-finished]")) { setTimeout(tick, seconds * 1000); }
      })
      .catch(function () { setTimeout(tick, seconds * 2000); });
  }
  setTimeout(tick, seconds * 1000);
})();
