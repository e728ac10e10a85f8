// The activity editor: never lose work silently.
// * Leaving the page with unsaved changes asks first (any submit of the form saves them).
// * A note says the live preview shows the last saved draft while changes are pending.
// * The slider step is only offered when "Show as a slider" is ticked.
(function () {
  "use strict";
  var form = document.getElementById("editor-form");
  if (!form) { return; }
  var dirty = false;
  var note = document.getElementById("unsaved-note");
  function changed() {
    dirty = true;
    if (note) { note.hidden = false; }
  }
  form.addEventListener("input", changed);
  form.addEventListener("change", changed);
  form.addEventListener("submit", function () { dirty = false; });
  window.addEventListener("beforeunload", function (event) {
    if (!dirty) { return undefined; }
    event.preventDefault();
    event.returnValue = "";
    return "";
  });
  function syncSlider(box) {
    var id = box.id.replace(/^slider-/, "");
    var step = document.getElementById("step-" + id);
    if (step) { step.closest(".field").hidden = !box.checked; }
  }
  var boxes = form.querySelectorAll("input[id^='slider-']");
  for (var i = 0; i < boxes.length; i += 1) {
    syncSlider(boxes[i]);
    boxes[i].addEventListener("change", function (event) { syncSlider(event.target); });
  }
}());
