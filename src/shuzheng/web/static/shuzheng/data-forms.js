/* The rule form of the data pages: shows only the parameter fields the chosen kind of check takes.
   Without JavaScript every parameter field shows, and the service ignores none: it names the wrong ones. */
(function () {
  "use strict";

  function setup(form) {
    var kind = form.querySelector("select[name=kind]");
    var source = document.getElementById("rule-param-kinds");
    if (!kind || !source) { return; }
    var kinds = JSON.parse(source.textContent);
    function update() {
      form.querySelectorAll(".param[data-param]").forEach(function (el) {
        var name = el.getAttribute("data-param").replace(/^params_/, "");
        var shown = (kinds[name] || []).indexOf(kind.value) !== -1 || el.querySelector(".error") !== null;
        el.hidden = !shown;
      });
      var fieldset = form.querySelector("fieldset.params");
      if (fieldset) { fieldset.hidden = !form.querySelector(".param[data-param]:not([hidden])"); }
    }
    kind.addEventListener("change", update);
    update();
  }

  function setupAll() { document.querySelectorAll("form[data-rule-form]").forEach(setup); }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", setupAll);
  } else {
    setupAll();
  }
})();
