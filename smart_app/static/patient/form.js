/* hw-fhir patient form: progressive enhancement of a page that works without JavaScript.
   - enableWhen applied live (hidden items are disabled, so they are never sent);
   - "add another" / "remove" for repeating groups without a round trip;
   - sliders for number fields marked as sliders (an untouched slider sends nothing);
   - autosave of the draft to the server (resume on any device). */
(function () {
  "use strict";
  document.documentElement.classList.add("js");
  var form = document.getElementById("hw-form");
  var summary = document.getElementById("error-summary");
  if (summary) { summary.focus(); }
  if (!form) { return; }

  function itemOf(el) { return el.closest("[data-hw-item]"); }
  function containerAbove(el) {
    var parent = el.parentElement;
    return parent ? parent.closest("[data-hw-container]") : null;
  }
  function cssEscape(s) { return window.CSS && CSS.escape ? CSS.escape(s) : s.replace(/"/g, '\\"'); }

  function answers(item) {
    var out = [];
    item.querySelectorAll("input, select, textarea").forEach(function (input) {
      if (!input.name || input.name.indexOf("q:") !== 0 || itemOf(input) !== item) { return; }
      if (input.type === "radio" || input.type === "checkbox") {
        if (input.checked) { out.push(input.value); }
      } else if (input.value.trim() !== "") {
        out.push(input.value.trim());
      }
    });
    return out;
  }

  function questions(item, linkId) {
    var level = containerAbove(item);
    var selector = '[data-hw-item][data-link-id="' + cssEscape(linkId) + '"]';
    while (level) {
      var found = Array.prototype.filter.call(level.querySelectorAll(selector), function (q) { return q !== item; });
      if (found.length) { return found; }
      level = containerAbove(level);
    }
    return [];
  }

  function compare(a, b, kind) {
    if (kind === "number") { a = parseFloat(a); if (isNaN(a)) { return null; } return a - b; }
    return a < b ? -1 : a > b ? 1 : 0;
  }

  function met(item, cond) {
    var values = [];
    questions(item, cond.q).forEach(function (q) {
      if (!q.hidden) { values = values.concat(answers(q)); }
    });
    if (cond.kind === "any") { return true; }
    if (cond.op === "exists") { return (values.length > 0) === cond.v; }
    var same = values.some(function (v) {
      return cond.kind === "number" ? parseFloat(v) === cond.v : String(v) === String(cond.v);
    });
    if (cond.op === "=") { return same; }
    if (cond.op === "!=") { return !same; }
    return values.some(function (v) {
      var c = compare(v, cond.v, cond.kind);
      if (c === null) { return false; }
      return cond.op === ">" ? c > 0 : cond.op === "<" ? c < 0 : cond.op === ">=" ? c >= 0 : c <= 0;
    });
  }

  function applyEnableWhen() {
    var items = form.querySelectorAll("[data-conditions]");
    for (var pass = 0; pass < 10; pass++) {
      var changed = false;
      items.forEach(function (item) {
        var conds = JSON.parse(item.getAttribute("data-conditions"));
        var results = conds.map(function (c) { return met(item, c); });
        var on = item.getAttribute("data-behavior") === "any" ? results.some(Boolean) : results.every(Boolean);
        if (item.hidden === on) { item.hidden = !on; changed = true; }
      });
      if (!changed) { break; }
    }
    form.querySelectorAll("input, select, textarea").forEach(function (input) {
      if (input.name && input.name.indexOf("q:") === 0) {
        input.disabled = !!input.closest("[data-hw-item][hidden]");
      }
    });
  }

  /* sliders */
  function enhanceSliders(root) {
    root.querySelectorAll("[data-hw-slider]").forEach(function (box) {
      if (box.querySelector("input[type=range]")) { return; }
      var number = box.querySelector("input[type=number]");
      var range = document.createElement("input");
      range.type = "range";
      range.min = box.dataset.min; range.max = box.dataset.max; range.step = box.dataset.step;
      var label = box.parentElement.querySelector("label.label");
      if (label) { range.setAttribute("aria-labelledby", label.id); }
      range.setAttribute("aria-describedby", number.getAttribute("aria-describedby") || "");
      var set = number.value !== "";
      range.value = set ? number.value : box.dataset.min;
      box.classList.toggle("untouched", !set);
      range.addEventListener("input", function () {
        number.value = range.value; box.classList.remove("untouched");
        number.dispatchEvent(new Event("input", { bubbles: true }));
      });
      number.addEventListener("input", function () {
        if (number.value !== "") { range.value = number.value; box.classList.remove("untouched"); }
      });
      box.insertBefore(range, number);
    });
  }

  /* repeating groups */
  function renumber(repeat) {
    repeat.querySelectorAll(":scope > [data-hw-instances] > [data-hw-instance]").forEach(function (inst, n) {
      var number = inst.querySelector("[data-hw-number]");
      if (number) { number.textContent = String(n + 1); }
    });
  }
  function nextIndex(repeat) {
    var highest = -1, name = repeat.dataset.name;
    repeat.querySelectorAll(":scope > [data-hw-instances] > [data-hw-instance]").forEach(function (inst) {
      var n = parseInt(inst.dataset.name.slice(name.length + 1), 10);
      if (!isNaN(n) && n > highest) { highest = n; }
    });
    return highest + 1;
  }
  form.addEventListener("click", function (event) {
    var add = event.target.closest("[data-hw-add]");
    var remove = event.target.closest("[data-hw-remove]");
    if (add) {
      event.preventDefault();
      var repeat = add.closest("[data-hw-repeat]");
      var template = repeat.querySelector(":scope > template[data-hw-template]");
      var placeholder = repeat.dataset.placeholder;
      var html = template.innerHTML.split(placeholder).join(String(nextIndex(repeat)));
      var holder = document.createElement("div");
      holder.innerHTML = html;
      var instance = holder.firstElementChild;
      repeat.querySelector(":scope > [data-hw-instances]").appendChild(instance);
      enhanceSliders(instance);
      renumber(repeat);
      applyEnableWhen();
      var first = instance.querySelector("input:not([type=hidden]), textarea, select");
      if (first) { first.focus(); }
      scheduleSave();
    } else if (remove) {
      event.preventDefault();
      var inst = remove.closest("[data-hw-instance]");
      var rep = remove.closest("[data-hw-repeat]");
      var all = rep.querySelectorAll(":scope > [data-hw-instances] > [data-hw-instance]");
      if (all.length > 1) {
        inst.remove();
      } else {
        inst.querySelectorAll("input, textarea, select").forEach(function (i) {
          if (i.type === "radio" || i.type === "checkbox") { i.checked = false; } else { i.value = ""; }
        });
      }
      renumber(rep);
      applyEnableWhen();
      rep.querySelector("[data-hw-add]").focus();
      scheduleSave();
    }
  });

  /* autosave */
  var status = form.querySelector("[data-hw-status]");
  var timer = null, saving = false, again = false, submitting = false;
  var kept = false;  /* pwa.js kept the answers on this device (offline): its notice stays */
  function say(text) { if (status) { status.textContent = text; } }
  /* the page's words (data-say-* on the status, in the page's language), else English */
  function words(name, english) { return (status && status.getAttribute("data-say-" + name)) || english; }
  function save(keepalive) {
    if (submitting) { return; }
    if (saving) { again = true; return; }
    saving = true;
    var data = new FormData(form);
    data.delete("_action");
    var token = form.querySelector("input[name=csrf_token]").value;
    fetch(form.dataset.autosaveUrl, {
      method: "POST", body: data, credentials: "same-origin", keepalive: !!keepalive,
      headers: { "X-CSRF-Token": token, "Accept": "application/json" }
    }).then(function (r) { return r.json().catch(function () { return { ok: false }; }); })
      .then(function (body) {
        if (body.ok) {
          var seen = form.querySelector("input[name=_version]");
          if (seen && body.version) { seen.value = body.version; }
          document.dispatchEvent(new CustomEvent("hw:saved"));
          var t = new Date();
          var lang = document.documentElement.lang || [];
          say(words("saved", "Draft saved at {time}").replace("{time}",
            t.toLocaleTimeString(lang, { hour: "numeric", minute: "2-digit" })));
        } else {
          say(body.message || words("not-saved", "Not saved yet."));
        }
      })
      .catch(function () {
        if (!kept) { say(words("offline", "Offline: your answers will be saved when you tap Save.")); }
      })
      .then(function () {
        saving = false;
        if (again) { again = false; scheduleSave(); }
      });
  }
  function scheduleSave() {
    if (!form.dataset.autosaveUrl) { return; }
    clearTimeout(timer);
    timer = setTimeout(function () { timer = null; save(false); }, 1500);
  }
  form.addEventListener("input", function () { kept = false; applyEnableWhen(); scheduleSave(); });
  form.addEventListener("change", function () { kept = false; applyEnableWhen(); scheduleSave(); });
  /* offline, pwa.js takes the submit and keeps the answers: no autosave is due any more */
  document.addEventListener("hw:kept", function () { kept = true; clearTimeout(timer); timer = null; });
  form.addEventListener("submit", function (event) {
    if (saving) {  /* wait for the autosave in flight: it moves the draft's version */
      event.preventDefault();
      var by = event.submitter;
      var wait = setInterval(function () {
        if (!saving) { clearInterval(wait); form.requestSubmit(by || undefined); }
      }, 50);
      return;
    }
    submitting = true; clearTimeout(timer); timer = null;
  });
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "hidden" && timer) { clearTimeout(timer); timer = null; save(true); }
  });

  enhanceSliders(form);
  applyEnableWhen();
})();
