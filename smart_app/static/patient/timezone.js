// Preselect the browser's time zone in the preferences picker when the patient has none stored
// (the select carries data-guess-zone). Without JavaScript the practice's zone stays selected.
(function () {
  "use strict";
  var select = document.querySelector("select[data-guess-zone]");
  if (!select || !window.Intl || !Intl.DateTimeFormat) { return; }
  var zone;
  try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (e) { return; }
  if (!zone) { return; }
  for (var i = 0; i < select.options.length; i += 1) {
    if (select.options[i].value === zone) { select.selectedIndex = i; select.dataset.guessed = zone; return; }
  }
})();
