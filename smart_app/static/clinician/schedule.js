// The schedule fields of the assign and edit forms: show only what the chosen frequency uses.
// Days of the week only for "weekly"; the interval only for "every N days" and "weekly";
// how it ends only for repeating schedules. Without JavaScript everything shows and the
// server ignores what does not apply.
(function () {
  "use strict";
  var frequency = document.getElementById("f-frequency");
  if (!frequency) { return; }
  function show(id, visible) {
    var element = document.getElementById(id);
    if (element) { element.hidden = !visible; }
  }
  function sync() {
    var value = frequency.value;
    show("f-days", value === "weekly");
    show("f-interval-field", value === "every-n-days" || value === "weekly");
    show("f-end", value !== "once");
  }
  frequency.addEventListener("change", sync);
  sync();
}());
