// Keep relative times ("3 minutes ago") true while a page stays open: every <time> the
// `when` filter writes carries its moment in `datetime`, and the exact UTC time on hover.
(function () {
  var UNITS = [["year", 31536000], ["month", 2592000], ["week", 604800], ["day", 86400],
               ["hour", 3600], ["minute", 60], ["second", 1]];
  function words(iso) {
    var seconds = Math.round((Date.parse(iso) - Date.now()) / 1000);
    var size = Math.abs(seconds);
    if (size < 10) { return "now"; }
    for (var i = 0; i < UNITS.length; i++) {
      if (size >= UNITS[i][1] || UNITS[i][0] === "second") {
        var count = Math.floor(size / UNITS[i][1]);
        var unit = UNITS[i][0] + (count === 1 ? "" : "s");
        return seconds < 0 ? count + " " + unit + " ago" : "in " + count + " " + unit;
      }
    }
  }
  function tick(root) {
    var times = (root || document).querySelectorAll("time[datetime]");
    for (var i = 0; i < times.length; i++) {
      var text = words(times[i].getAttribute("datetime"));
      if (text) { times[i].textContent = text; }
    }
  }
  window.modelgateTimes = tick;
  tick();
  setInterval(tick, 15000);
})();
