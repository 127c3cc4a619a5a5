/* Small helpers shared by the pages (no framework). */
window.TS = window.TS || {};

TS.csrfToken = function () {
  var input = document.querySelector("input[name=csrfmiddlewaretoken]");
  return input ? input.value : "";
};

/* el("p", {class: "x", text: "hi"}, [children]): text is set as text, never parsed as HTML. */
TS.el = function (tag, attrs, children) {
  var node = document.createElement(tag);
  Object.entries(attrs || {}).forEach(function (pair) {
    var key = pair[0], value = pair[1];
    if (value === null || value === undefined || value === false) return;
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value === true ? "" : value);
  });
  (children || []).forEach(function (child) {
    if (child) node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
  });
  return node;
};

TS.TYPE_LABELS = { meningioma: "Meningioma", glioma: "Glioma", pituitary: "Pituitary tumour" };

TS.formatArea = function (mm2, px) {
  if (mm2 !== null && mm2 !== undefined) return Math.round(mm2).toLocaleString("en-GB") + " mm²";
  if (px !== null && px !== undefined) return px.toLocaleString("en-GB") + " px (spacing unknown)";
  return "—";
};

TS.formatWhen = function (iso) {
  if (!iso) return "";
  var d = new Date(iso);
  return d.toLocaleString("en-GB", { day: "numeric", month: "short", year: "numeric", hour: "2-digit", minute: "2-digit" });
};

TS.fetchJSON = function (url) {
  return fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" }).then(function (r) {
    if (!r.ok) throw new Error("HTTP " + r.status);
    return r.json();
  });
};

TS.caseUrl = function (template, id) {
  return template.replace("/0/", "/" + id + "/");
};
