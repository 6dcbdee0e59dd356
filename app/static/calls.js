// Caller screens: number keys pick options, Enter saves, confirmations, lease renewal.
(function () {
  "use strict";
  var form = document.getElementById("answer");
  if (form) {
    var first = form.querySelector("input[type=radio]:checked, input[type=radio], input[type=checkbox]");
    if (first && !document.activeElement.matches("input, textarea")) { first.focus(); }
    document.addEventListener("keydown", function (event) {
      var target = event.target;
      var typing = target.matches("textarea, input[type=text], input[type=number], input[type=search]");
      if (!typing && /^[1-9]$/.test(event.key) && !event.ctrlKey && !event.altKey && !event.metaKey) {
        var options = form.querySelectorAll(".options input");
        var option = options[parseInt(event.key, 10) - 1];
        if (option) {
          event.preventDefault();
          if (option.type === "radio") { option.checked = true; } else { option.checked = !option.checked; }
          option.focus();
          option.dispatchEvent(new Event("change", { bubbles: true }));
        }
      } else if (event.key === "Enter" && !event.shiftKey && target.tagName !== "TEXTAREA" && target.tagName !== "BUTTON" && target.tagName !== "A") {
        event.preventDefault();
        form.requestSubmit();
      }
    });
  }
  document.querySelectorAll("form[data-confirm]").forEach(function (f) {
    f.addEventListener("submit", function (event) {
      if (!window.confirm(f.getAttribute("data-confirm"))) { event.preventDefault(); }
    });
  });
  // keep the case while the caller is working on it: renew the lease on activity, at most every 2 minutes
  var lease = document.getElementById("lease");
  if (lease) {
    var last = Date.now();
    var renew = function () {
      if (Date.now() - last < 120000) { return; }
      last = Date.now();
      fetch(lease.getAttribute("data-url"), { method: "POST", credentials: "same-origin",
        headers: { "X-CSRFToken": lease.getAttribute("data-csrf") } }).catch(function () {});
    };
    ["keydown", "click", "touchstart"].forEach(function (name) { document.addEventListener(name, renew, { passive: true }); });
  }
})();
