/* Diagnosis entry: suggestions from the catalogue (GET /api/diagnoses/?q=) in a native datalist. */
(function () {
  var input = document.getElementById("diagnosis-name");
  if (!input) return;
  var list = document.getElementById("diagnosis-options");
  var timer = null, lastQuery = null;

  function refresh() {
    var q = input.value.trim();
    if (q === lastQuery) return;
    lastQuery = q;
    TS.fetchJSON(input.dataset.api + "?page_size=10&q=" + encodeURIComponent(q)).then(function (data) {
      list.replaceChildren.apply(list, data.results.map(function (d) {
        return TS.el("option", { value: d.name, label: d.uses + " case" + (d.uses === 1 ? "" : "s") });
      }));
    }).catch(function () { /* suggestions are a help, not a requirement */ });
  }

  input.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(refresh, 150); });
  input.addEventListener("focus", refresh);
})();
