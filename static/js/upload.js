/* Upload page: every file is posted on its own, with its own progress bar and its own error. */
(function () {
  var form = document.getElementById("upload-form");
  if (!form) return;
  var el = TS.el;
  var input = document.getElementById("files");
  var dropzone = document.getElementById("dropzone");
  var list = document.getElementById("upload-list");
  var counter = 0;

  function sizeText(bytes) {
    return bytes >= 1048576 ? (bytes / 1048576).toFixed(1) + " MB" : Math.max(1, Math.round(bytes / 1024)) + " kB";
  }

  function readError(xhr) {
    try {
      var body = JSON.parse(xhr.responseText);
      // A problem (RFC 9457): the file's own message when the image was refused, else the summary.
      if (body.errors && body.errors.image && body.errors.image.length) return body.errors.image[0];
      if (body.detail) return body.detail;
    } catch (e) { /* not JSON: fall through */ }
    if (xhr.status === 413) return "The file is too large for the server.";
    if (xhr.status === 403) return "You are signed out or not allowed to upload; please sign in again.";
    return "The server could not take this file (HTTP " + xhr.status + ").";
  }

  function duplicateOf(xhr) {
    try {
      var body = JSON.parse(xhr.responseText);
      return body.duplicate_of ? body : null;
    } catch (e) { return null; }
  }

  function watch(row, caseId) {
    var status = row.querySelector(".upload-status");
    var url = TS.caseUrl(form.dataset.caseUrl, caseId) + "state.json";
    TS.fetchJSON(url).then(function (s) {
      if (s.status === "queued" || s.status === "running") {
        status.textContent = s.status === "running" ? "Segmenting…" : "Uploaded; waiting to be segmented…";
        setTimeout(function () { watch(row, caseId); }, 1500);
        return;
      }
      if (!s.segmentations.length) {
        status.textContent = "Recorded, but not segmented: no segmentation model is installed.";
        return;
      }
      var primary = s.segmentations.filter(function (x) { return x.is_primary; })[0];
      var failed = s.segmentations.filter(function (x) { return x.status === "failed"; });
      var text = "Segmented";
      if (primary && primary.status === "done") text += ": tumour area " + TS.formatArea(primary.area_mm2, primary.area_px);
      if (failed.length) text += " (" + failed.length + " model" + (failed.length > 1 ? "s" : "") + " failed)";
      status.textContent = text + ".";
      row.classList.add("done");
      var thumb = row.querySelector("img.upload-thumb");
      thumb.src = TS.caseUrl(form.dataset.caseUrl, caseId) + "thumbnail.png?v=" + Date.now();
      thumb.hidden = false;
    }).catch(function () { setTimeout(function () { watch(row, caseId); }, 4000); });
  }

  function offerForce(row, status, file, body) {
    // The same file is already a case: link to it, and let the uploader record it again on purpose.
    var dup = body.duplicate_of;
    row.classList.add("duplicate");
    status.className = "upload-result";
    status.removeAttribute("role");
    status.replaceChildren("Already uploaded as ", el("a", { href: dup.page, text: "case " + dup.id }),
      "; not stored again. ");
    var again = el("button", { type: "button", class: "small", text: "Upload anyway" });
    again.addEventListener("click", function () {
      row.remove();
      uploadOne(file, true);
    });
    status.appendChild(again);
  }

  function uploadOne(file, force) {
    counter += 1;
    var bar = el("progress", { max: "100", value: "0", id: "progress-" + counter, "aria-label": "Upload of " + file.name });
    var status = el("p", { class: "upload-status", role: "status", text: "Uploading…" });
    var row = el("li", { class: "upload-row", "data-file": file.name }, [
      el("img", { class: "upload-thumb", alt: "Slice with the tumour outline", width: "96", height: "96", hidden: true }),
      el("div", { class: "upload-main" }, [
        el("p", {}, [el("strong", { text: file.name }), el("span", { class: "muted small", text: " · " + sizeText(file.size) })]),
        bar, status]),
    ]);
    list.appendChild(row);

    var data = new FormData();
    data.append("image", file, file.name);
    var patient = form.elements.patient.value.trim();
    if (patient) data.append("patient", patient);
    if (form.elements.tumour_type.value) data.append("tumour_type", form.elements.tumour_type.value);
    if (force) data.append("force", "true");

    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.dataset.api);
    xhr.setRequestHeader("X-CSRFToken", TS.csrfToken());
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.addEventListener("progress", function (e) {
      if (e.lengthComputable) bar.value = Math.round((100 * e.loaded) / e.total);
    });
    xhr.addEventListener("load", function () {
      if (xhr.status === 201) {
        bar.value = 100;
        var body = JSON.parse(xhr.responseText);
        row.classList.add("ok");
        row.dataset.caseId = body.id;
        bar.hidden = true;
        status.className = "upload-result";
        // A multi-frame DICOM file is one case per frame, of one study; the link opens the first.
        var slices = (body.cases || [body.id]).length;
        status.replaceChildren(slices > 1 ? "Uploaded as " + slices + " slices of one study, from " : "Uploaded as ",
          el("a", { href: TS.caseUrl(form.dataset.caseUrl, body.id), text: "case " + body.id }), ".");
        row.querySelector(".upload-main").appendChild(
          el("p", { class: "upload-status small", role: "status", text: "Waiting to be segmented…" }));
        watch(row, body.id);
      } else if (xhr.status === 409 && duplicateOf(xhr)) {
        bar.hidden = true;
        offerForce(row, status, file, duplicateOf(xhr));
      } else {
        row.classList.add("failed");
        bar.hidden = true;
        status.className = "error";
        status.setAttribute("role", "alert");
        status.textContent = "Not uploaded: " + readError(xhr);
      }
    });
    xhr.addEventListener("error", function () {
      row.classList.add("failed");
      status.className = "error";
      status.textContent = "Not uploaded: the connection to the server failed. Check the network and try again.";
    });
    xhr.send(data);
  }

  function take(files) {
    Array.prototype.forEach.call(files, function (file) { uploadOne(file, false); });
  }

  input.addEventListener("change", function () { take(input.files); input.value = ""; });
  ["dragenter", "dragover"].forEach(function (name) {
    dropzone.addEventListener(name, function (e) { e.preventDefault(); dropzone.classList.add("over"); });
  });
  ["dragleave", "drop"].forEach(function (name) {
    dropzone.addEventListener(name, function (e) { e.preventDefault(); dropzone.classList.remove("over"); });
  });
  dropzone.addEventListener("drop", function (e) { if (e.dataTransfer) take(e.dataTransfer.files); });
  form.addEventListener("submit", function (e) { e.preventDefault(); });
})();
