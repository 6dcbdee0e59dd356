// Caller screens: number keys pick options, Enter saves, confirmations, lease renewal.
(function () {
  "use strict";
  var form = document.getElementById("answer");
  if (form) {
    // focus the chosen option when there is one (coming back with 上一题), else the first one;
    // one selector list would return the first option in document order, checked or not
    var first = form.querySelector(".options input[type=radio]:checked") ||
      form.querySelector(".options input[type=radio], .options input[type=checkbox]");
    if (first && !document.activeElement.matches("input, textarea")) { first.focus(); }
    // "没有接受过服务" and the like exclude the other options: choosing one clears the others
    form.addEventListener("change", function (event) {
      var input = event.target;
      if (input.type !== "checkbox" || !input.checked) { return; }
      var exclusive = input.closest("label").hasAttribute("data-exclusive");
      form.querySelectorAll(".options input[type=checkbox]:checked").forEach(function (other) {
        if (other !== input && (exclusive || other.closest("label").hasAttribute("data-exclusive"))) {
          other.checked = false;
        }
      });
    });
    // the detail field (与居民关系) only when the chosen option asks for it
    var detail = form.querySelector("label.detail");
    if (detail && form.querySelector(".options [data-detail]")) {
      var syncDetail = function () {
        var chosen = form.querySelector(".options input:checked");
        detail.hidden = !(chosen && chosen.closest("label").hasAttribute("data-detail"));
      };
      form.addEventListener("change", syncDetail);
      syncDetail();
    }
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
