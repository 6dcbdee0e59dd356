// The caller's day on the home page: every minute (and when the tab is shown again) ask
// day.json for the signed-in user's callbacks due today and their figures, update the list
// and the figures in place, and announce a callback that has fallen due since the page was
// shown. The server decides what is due (its clock, not the browser's). No inline script
// or style: the Content-Security-Policy allows neither.
(function () {
  "use strict";
  var root = document.getElementById("my-day");
  if (!root || !window.fetch) { return; }
  var url = root.getAttribute("data-url");
  var notice = document.getElementById("callback-notice");
  var list = document.getElementById("callback-list");
  var none = document.getElementById("callback-none");
  var later = document.getElementById("callback-later");
  var PERIOD = 60000;

  // callbacks already due when shown (marked 已到期 on the page) are not announced again
  var announced = {};
  list.querySelectorAll("li[data-due]").forEach(function (li) { announced[li.getAttribute("data-case")] = true; });

  function text(tag, className, value) {
    var el = document.createElement(tag);
    if (className) { el.className = className; }
    el.textContent = value;
    return el;
  }

  function item(c) {
    var li = document.createElement("li");
    li.className = c.due ? "callback due" : "callback";
    li.setAttribute("data-case", String(c.case_id));
    if (c.due) { li.setAttribute("data-due", ""); }
    li.appendChild(text("span", "when", c.time));
    if (c.due) { li.appendChild(text("span", "tag tag-due", "已到期")); }
    var link = text("a", "who", c.name);
    link.href = c.url;
    li.appendChild(link);
    li.appendChild(text("span", "where", c.institution || ""));
    li.appendChild(text("span", "tel", c.phone || ""));
    return li;
  }

  var shown = null;  // what the list shows, to leave it (and the focus in it) alone when unchanged
  function showList(callbacks) {
    var signature = JSON.stringify(callbacks);
    if (signature === shown) { return; }
    shown = signature;
    var focused = document.activeElement && list.contains(document.activeElement)
      ? document.activeElement.closest("li").getAttribute("data-case") : null;
    var fresh = document.createDocumentFragment();
    callbacks.forEach(function (c) { fresh.appendChild(item(c)); });
    list.replaceChildren(fresh);
    none.hidden = callbacks.length > 0;
    if (focused) {
      var again = list.querySelector('li[data-case="' + focused + '"] a');
      if (again) { again.focus(); }
    }
  }

  function showFigures(data) {
    root.querySelectorAll("[data-fig]").forEach(function (el) {
      var path = el.getAttribute("data-fig").split(".");
      var value = data;
      path.forEach(function (key) { value = value == null ? null : value[key]; });
      if (typeof value === "number") { el.textContent = String(value); }
    });
    if (typeof data.later === "number") { later.hidden = data.later === 0; }
  }

  function announce(fallen) {
    var message = text("span", "message", "回访时间到：");
    fallen.forEach(function (c, i) {
      if (i) { message.appendChild(document.createTextNode("、")); }
      var link = text("a", "", c.name);
      link.href = c.url;
      message.appendChild(link);
      message.appendChild(document.createTextNode("（" + c.time + "）"));
    });
    var close = text("button", "", "知道了");
    close.type = "button";
    close.addEventListener("click", function () { notice.replaceChildren(); });
    notice.replaceChildren(message, close);
  }

  function update(data) {
    if (!data || !Array.isArray(data.callbacks)) { return; }
    showList(data.callbacks);
    showFigures(data);
    var fallen = data.callbacks.filter(function (c) { return c.due && !announced[String(c.case_id)]; });
    fallen.forEach(function (c) { announced[String(c.case_id)] = true; });
    if (fallen.length) { announce(fallen); }
  }

  var busy = false;
  function poll() {
    if (busy || document.visibilityState === "hidden") { return; }
    busy = true;
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (reply) {
        // signed out or a server error: leave the page as it is, try again next time
        var json = (reply.headers.get("Content-Type") || "").indexOf("application/json") === 0;
        return reply.ok && !reply.redirected && json ? reply.json() : null;
      })
      .then(update)
      .catch(function () { /* offline: the next poll tries again */ })
      .then(function () { busy = false; });
  }

  setInterval(poll, PERIOD);
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") { poll(); }
  });
}());
