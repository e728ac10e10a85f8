/* Clinician pages: the few behaviours that used to be inline scripts (the CSP allows only
   scripts from this origin). Loaded in <head> without defer so "js" styling applies at once. */
document.documentElement.classList.add("js");
document.addEventListener("DOMContentLoaded", function () {
  var print = document.getElementById("print-button");
  if (print) {
    print.addEventListener("click", function () { window.print(); });
  }
  document.querySelectorAll("form[data-inert]").forEach(function (form) {
    form.addEventListener("submit", function (event) { event.preventDefault(); });
  });
});
