// Caller screens, all by keyboard: the dialling panel's one-key outcomes, number keys and Enter
// on the questionnaire, Ctrl+Enter in multi-line fields, undo, confirmations, lease renewal.
(function () {
  "use strict";
  var TYPING = "textarea, input[type=text], input[type=number], input[type=search], input[type=date], input[type=time], select";
  var sent = false;  // one submission per page: a second key press must not post twice

  function plainKey(event) {
    return !event.ctrlKey && !event.altKey && !event.metaKey && event.key && event.key.length === 1;
  }

  // an IME composing Chinese: its keys (Enter that commits the letters included) are not ours
  function composing(event) {
    return event.isComposing || event.keyCode === 229;
  }

  function send(form, button) {
    if (!sent) { form.requestSubmit(button || undefined); }  // validation may still stop it
  }

  // the first submission of the page goes; a second (a double press or click) is dropped
  document.addEventListener("submit", function (event) {
    if (sent) { event.preventDefault(); return; }
    sent = true;
  }, true);

  // ---- the dialling panel ----------------------------------------------------------------
  var panel = document.getElementById("panel");
  if (panel) {
    // the panel came as the answer to recording the previous case: its own address for
    // reload and Back, so a reload shows this case instead of posting again
    var own = panel.getAttribute("data-url");
    if (own && window.location.pathname !== own && window.history.replaceState) {
      window.history.replaceState(null, "", own);
    }
    var note = document.getElementById("note");
    var day = document.getElementById("callback_date");
    var clock = document.getElementById("callback_time");
    var pending = panel.querySelector("button.choice.chosen");
    var hint = document.createElement("p");
    hint.className = "field-hint pending-hint";
    hint.setAttribute("role", "status");

    var choose = function (button) {
      panel.querySelectorAll("button.chosen").forEach(function (b) { b.classList.remove("chosen"); });
      pending = button;
      button.classList.add("chosen");
    };
    var missing = function (button) {
      var needs = button.getAttribute("data-needs");
      if (needs === "note") { return !note.value.trim() ? note : null; }
      if (needs === "callback") {
        if (!day.value) { return day; }
        if (!clock.value) { return clock; }
      }
      return null;
    };
    // an outcome that needs a note or a time: choose it, go to the field, record with Ctrl+Enter
    var pick = function (button) {
      var field = missing(button);
      if (!field) { send(panel, button); return; }
      choose(button);
      var label = button.textContent.replace(/^\s*\S+\s+/, "").trim();
      hint.textContent = (field === note ? "请填写说明，" : "请填写回访日期和时间，") + "然后按 Ctrl+Enter 记录“" + label + "”。";
      field.closest("fieldset").appendChild(hint);
      if (field === day && !day.value) { day.value = day.getAttribute("min") || ""; field = clock; }
      field.focus();
    };
    panel.querySelectorAll("button[data-needs]").forEach(function (button) {
      button.addEventListener("click", function (event) {
        if (missing(button)) { event.preventDefault(); pick(button); }
      });
    });
    document.addEventListener("keydown", function (event) {
      if (sent || composing(event)) { return; }
      var target = event.target;
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && panel.contains(target)) {
        event.preventDefault();
        if (pending && !missing(pending)) { send(panel, pending); }
        else if (pending) { pick(pending); }
        else if (target === day || target === clock) { pick(panel.querySelector("button[data-needs=callback]")); }
        else {
          hint.textContent = "请先按键或点击选择一个结果。";
          (target.closest("fieldset") || panel).appendChild(hint);
        }
        return;
      }
      if (event.key === "Enter" && (target === day || target === clock)) {
        // Enter in the callback's date or time records the callback, never another outcome
        event.preventDefault();
        if (!pending || pending.getAttribute("data-needs") === "callback") {
          pick(panel.querySelector("button[data-needs=callback]"));
        }
        return;
      }
      if (!plainKey(event) || target.matches(TYPING)) { return; }
      var key = event.key.toUpperCase();
      if (key === "U") { return; }  // undo, below
      var button = panel.querySelector('button[data-key="' + key + '"]');
      if (button) { event.preventDefault(); pick(button); }
    });
  }

  // ---- undo of the outcome just recorded -------------------------------------------------
  var undo = document.getElementById("undo");
  if (undo) {
    var left = parseInt(undo.getAttribute("data-seconds"), 10) || 0;
    var countdown = undo.querySelector(".countdown");
    var tick = function () {
      if (left <= 0) { undo.hidden = true; return; }
      countdown.textContent = "（" + left + " 秒内）";
      left -= 1;
      window.setTimeout(tick, 1000);
    };
    tick();
    document.addEventListener("keydown", function (event) {
      if (!undo.hidden && !composing(event) && plainKey(event) && event.key.toUpperCase() === "U" &&
          !event.target.matches(TYPING)) {
        event.preventDefault();
        send(undo);
      }
    });
  }

  // ---- the questionnaire -----------------------------------------------------------------
  var form = document.getElementById("answer");
  if (form) {
    // focus the chosen option when there is one (coming back with 上一题), else the first one;
    // one selector list would return the first option in document order, checked or not.
    // A field the page asks to focus (the refused 通话中断 form's date, a number or text
    // answer) wins: the browser may apply autofocus only after this script has run, and not
    // at all once the focus has moved, so focus it here rather than race it.
    var asked = document.querySelector("[autofocus]");
    var first = form.querySelector(".options input[type=radio]:checked") ||
      form.querySelector(".options input[type=radio], .options input[type=checkbox]");
    if (asked) { asked.focus(); }
    else if (first && !document.activeElement.matches("input, textarea")) { first.focus(); }
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
      var inAnswer = form.contains(target) || target === document.body;
      if (!inAnswer || composing(event)) { return; }
      if (plainKey(event) && /^[1-9]$/.test(event.key) && !target.matches(TYPING)) {
        var options = form.querySelectorAll(".options input");
        var option = options[parseInt(event.key, 10) - 1];
        if (option) {
          event.preventDefault();
          if (option.type === "radio") { option.checked = true; } else { option.checked = !option.checked; }
          option.focus();
          option.dispatchEvent(new Event("change", { bubbles: true }));
        }
      } else if (event.key === "Enter" && !event.shiftKey && !event.ctrlKey && !event.metaKey &&
                 target.tagName !== "TEXTAREA" && target.tagName !== "BUTTON" && target.tagName !== "A") {
        event.preventDefault();
        send(form);
      }
    });
  }

  // Ctrl+Enter submits the form being typed in (Enter in a multi-line field makes a new line)
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Enter" || !(event.ctrlKey || event.metaKey) || event.defaultPrevented || composing(event)) { return; }
    var own = event.target.closest ? event.target.closest("form") : null;
    if (own && own !== panel) {
      event.preventDefault();
      send(own, own.querySelector("button.primary:not([disabled])"));
    }
  });

  document.querySelectorAll("form[data-confirm]").forEach(function (f) {
    f.addEventListener("submit", function (event) {
      if (!window.confirm(f.getAttribute("data-confirm"))) { event.preventDefault(); sent = false; }
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
