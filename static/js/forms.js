// Small helpers of the portal's forms (issue 16); no inline script anywhere (the CSP allows
// scripts from /static/ only).
//  - <button data-copy="#id">: copies the text of #id (an input's value) to the clipboard.
//  - <input data-select>: selects its whole value when focused.
//  - <select data-shows="prefix">: shows the <fieldset data-for="prefix:value"> matching the
//    chosen value and hides the others (the release form's strategy parameters).
(function () {
  function textOf(el) { return "value" in el && el.tagName !== "PRE" ? el.value : el.textContent; }
  function copy(button) {
    var target = document.querySelector(button.getAttribute("data-copy"));
    if (!target) { return; }
    var text = textOf(target), label = button.textContent;
    function done(ok) {
      // The word goes after 2 s; the state stays, for assistive tools and for tests.
      button.setAttribute("data-copy-state", ok ? "copied" : "failed");
      button.textContent = ok ? "Copied" : "Select and copy by hand";
      setTimeout(function () { button.textContent = label; }, 2000);
    }
    if (navigator.clipboard && window.isSecureContext) {
      // A browser that neither grants nor refuses (a permission prompt left open) must not
      // leave the button silent: after 2 s the person is told to copy by hand.
      var settled = false;
      function once(ok) { if (!settled) { settled = true; done(ok); } }
      setTimeout(function () { once(false); }, 2000);
      navigator.clipboard.writeText(text).then(function () { once(true); },
                                                function () { once(false); });
    } else {  // plain http: the old way
      var area = document.createElement("textarea");
      area.value = text; area.setAttribute("readonly", ""); area.style.position = "fixed";
      area.style.opacity = "0"; document.body.appendChild(area); area.select();
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      document.body.removeChild(area); done(ok);
    }
  }
  function toggle(select) {
    var prefix = select.getAttribute("data-shows");
    var sets = document.querySelectorAll("[data-for^='" + prefix + ":']");
    for (var i = 0; i < sets.length; i++) {
      var values = sets[i].getAttribute("data-for").slice(prefix.length + 1).split(" ");
      sets[i].hidden = values.indexOf(select.value) < 0;
    }
  }
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (button) { event.preventDefault(); copy(button); }
  });
  document.addEventListener("focusin", function (event) {
    if (event.target.matches("input[data-select]")) { event.target.select(); }
  });
  document.addEventListener("change", function (event) {
    if (event.target.matches("select[data-shows]")) { toggle(event.target); }
  });
  var selects = document.querySelectorAll("select[data-shows]");
  for (var i = 0; i < selects.length; i++) { toggle(selects[i]); }
})();
