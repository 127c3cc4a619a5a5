/* The case page: the slice viewer (static/js/viewer.js) with mask layers, the models side by side, live status, similar cases. */
(function () {
  var app = document.getElementById("case-app");
  if (!app) return;
  var el = TS.el;
  var toggles = document.getElementById("layer-toggles");
  var cards = document.getElementById("model-cards");
  var opacityInput = document.getElementById("opacity");
  var opacityOut = document.getElementById("opacity-value");

  var slice = null, state = null, pollTimer = null, similarTries = 0, similarDone = false, followUps = 0;
  var similarLoading = false;
  var opacity = opacityInput.value / 100, mode = "filled";
  var layers = new Map();  // key -> {key, label, colour, url, mask, visible, checkbox}
  var paletteIndex = 0;

  var STATUS_TEXT = { queued: "Queued", running: "Segmenting…", done: "Segmentation finished",
                      none: "Not segmented" };

  // The side-by-side cards draw on the 8-bit slice; the viewer reads the slice's own values.
  TS.loadImage(app.dataset.sliceUrl).then(function (img) { slice = img; redraw(); })
    .catch(function () { document.getElementById("case-status").textContent = "The slice could not be shown."; });

  // The viewer's slices: a study's list when the page has one (clinic.views.pictures.viewer_slice per case),
  // else this case alone. This case's outlines are the layers toggled below; another slice shows its own.
  var caseId = Number(app.dataset.caseId);
  var listed = document.getElementById("viewer-slices");
  var slices = listed ? JSON.parse(listed.textContent) : [{
    case_id: caseId, label: "", pixels: app.dataset.pixelsUrl, mask: app.dataset.maskUrl, probability: null,
    spacing: { row: Number(app.dataset.spacingRow) || null, col: Number(app.dataset.spacingCol) || null } }];
  var ownIndex = Math.max(0, slices.findIndex(function (s) { return s.case_id === caseId; }));
  var viewer = new TS.Viewer({ slices: slices, start: ownIndex, overlay: function (ctx, shown) {
    if (shown.case_id !== caseId) return false;
    layers.forEach(function (layer) { if (layer.visible && layer.mask) TS.drawMask(ctx, layer.mask, layer.colour, opacity, mode); });
    return true;
  } });

  opacityInput.addEventListener("input", function () {
    opacity = opacityInput.value / 100;
    opacityOut.textContent = opacityInput.value + "%";
    redraw();
  });
  document.querySelectorAll("input[name=draw-mode]").forEach(function (radio) {
    radio.addEventListener("change", function () { if (radio.checked) { mode = radio.value; redraw(); } });
  });

  function colourFor(key, isEnsemble) {
    if (key === "ground_truth") return TS.COLOURS.ground_truth;
    if (isEnsemble) return TS.COLOURS.ensemble;
    var c = TS.COLOURS.palette[paletteIndex % TS.COLOURS.palette.length];
    paletteIndex += 1;
    return c;
  }

  function ensureLayer(key, label, url, isEnsemble, visible) {
    var layer = layers.get(key);
    if (!layer) {
      layer = { key: key, label: label, colour: colourFor(key, isEnsemble), url: null, mask: null, visible: visible };
      layers.set(key, layer);
      var id = "layer-" + key.replace(/[^a-z0-9_-]/gi, "_");
      var box = el("input", { type: "checkbox", id: id, "data-layer": key });
      box.checked = visible;
      box.addEventListener("change", function () { layer.visible = box.checked; redraw(); });
      var swatch = el("span", { class: "swatch", "aria-hidden": "true" });
      swatch.style.background = TS.rgb(layer.colour);
      toggles.appendChild(el("div", { class: "toggle" }, [box, el("label", { for: id }, [swatch, label])]));
      layer.checkbox = box;
      var empty = document.getElementById("layers-empty");
      if (empty) empty.remove();
    }
    if (url && layer.url !== url) {
      layer.url = url;
      TS.loadImage(url).then(function (img) { layer.mask = TS.maskFromImage(img); redraw(); });
    }
    return layer;
  }

  function paint(target, only) {
    var c = target.getContext("2d");
    c.clearRect(0, 0, target.width, target.height);
    if (slice) c.drawImage(slice, 0, 0, target.width, target.height);
    layers.forEach(function (layer) {
      var show = only ? layer.key === only : layer.visible;
      if (show && layer.mask) TS.drawMask(c, layer.mask, layer.colour, opacity, mode);
    });
  }

  function redraw() {
    viewer.render();
    cards.querySelectorAll("canvas[data-layer]").forEach(function (mini) { paint(mini, mini.dataset.layer); });
  }

  function reviewForm(seg, decision, text) {
    var current = seg.review_status === (decision === "validate" ? "validated" : "rejected");
    var reason = null;
    if (decision === "reject" && !current) {  // optional: why, for whoever outlines the case next
      var id = "reason-" + seg.id;
      reason = el("span", { class: "review-reason-field" }, [
        el("label", { for: id, class: "small", text: "Reason (optional)" }),
        el("input", { type: "text", id: id, name: "reason", maxlength: "1000", class: "small",
                      placeholder: "e.g. misses the enhancing rim" })]);
    }
    return el("form", { method: "post", action: seg.review_url, class: "inline" }, [
      el("input", { type: "hidden", name: "csrfmiddlewaretoken", value: TS.csrfToken() }),
      el("input", { type: "hidden", name: "decision", value: decision }),
      reason,
      el("button", { type: "submit", class: decision === "validate" ? "small ok" : "small danger",
                     "aria-label": text + " the " + seg.model + " mask", text: text, disabled: current }),
    ]);
  }

  function reviewBadge(seg) {
    var text = seg.review_label;
    if (seg.reviewed_by) text += " — " + seg.reviewed_by + ", " + TS.formatWhen(seg.reviewed_at);
    var badge = el("p", { class: "badge review-" + seg.review_status, text: text });
    if (!seg.review_reason) return badge;
    return el("div", {}, [badge, el("p", { class: "small review-reason", text: "Reason: " + seg.review_reason })]);
  }

  // How far the ensemble's members agree (mean pairwise Dice of their masks); flagged when below the
  // level chosen on validation patients, where low agreement went with failed masks (ml/agreement.py).
  function agreementNote(seg) {
    var value = seg.agreement.toFixed(2);
    if (seg.agreement_flagged) {
      return el("p", { class: "message info agreement-flag", role: "note",
        text: "The models disagree here (agreement " + value + "): check this outline with care." });
    }
    return el("p", { class: "muted small agreement", text: "Agreement between the models: " + value + " (1 = identical masks)" });
  }

  function card(key, title, subtitle, body) {
    var layer = layers.get(key);
    var swatch = el("span", { class: "swatch", "aria-hidden": "true" });
    if (layer) swatch.style.background = TS.rgb(layer.colour);
    var mini = el("canvas", { width: app.dataset.width, height: app.dataset.height, "data-layer": key, role: "img",
                              "aria-label": title + " mask over the slice" });
    return el("article", { class: "model-card", "data-model": key }, [
      el("h3", {}, [swatch, title]), subtitle ? el("p", { class: "muted small", text: subtitle }) : null,
      mini].concat(body));
  }

  // dicom: the DICOM Segmentation's address, offered for a DICOM case only (null otherwise).
  function downloads(png, nifti, dicom, name) {
    if (!png) return null;
    return el("p", { class: "small" }, ["Download mask: ",
      el("a", { href: png, download: "", "aria-label": "Download the " + name + " mask as PNG", text: "PNG" }), " · ",
      el("a", { href: nifti, download: "", "aria-label": "Download the " + name + " mask as NIfTI", text: "NIfTI" }),
      dicom ? " · " : null,
      dicom ? el("a", { href: dicom, download: "", "aria-label": "Download the " + name + " mask as a DICOM Segmentation",
                        text: "DICOM SEG" }) : null]);
  }

  // A restored outline is a clinician's choice too, whatever version it came from (cases.MaskSource).
  var GROUND_TRUTH_BADGES = { imported: "Imported with the dataset", corrected: "Validated (corrected by a clinician)",
                              restored: "Validated (restored by a clinician)" };

  function renderCards() {
    cards.replaceChildren();
    var gt = state.ground_truth;
    if (gt) {
      var who = gt.updated_by ? " by " + gt.updated_by : "";
      cards.appendChild(card("ground_truth", "Ground truth",
        gt.label + who + (gt.updated_at ? ", " + TS.formatWhen(gt.updated_at) : ""), [
          el("p", {}, ["Area: ", el("strong", { text: TS.formatArea(gt.area_mm2, gt.area_px) })]),
          el("p", { class: "badge review-validated", text: GROUND_TRUTH_BADGES[gt.source] || gt.label }),
          downloads(gt.mask_png, gt.mask_nifti, gt.mask_dicom, "ground truth")]));
    }
    state.segmentations.forEach(function (seg) {
      var body = [];
      if (seg.status === "done") {
        body.push(el("p", {}, ["Area: ", el("strong", { text: TS.formatArea(seg.area_mm2, seg.area_px) }),
          seg.runtime_ms ? el("span", { class: "muted small", text: " · " + Math.round(seg.runtime_ms) + " ms" }) : null]));
        if (seg.weights) body.push(el("p", { class: "muted small", title: "the exact weights that made this mask", text: "Weights: " + seg.weights }));
        if (seg.agreement !== null && seg.agreement !== undefined) body.push(agreementNote(seg));
        body.push(reviewBadge(seg));
        if (state.can.review) {  // the page shows only what this user's role allows
          body.push(el("div", { class: "button-row" }, [reviewForm(seg, "validate", "Validate"),
                                                         reviewForm(seg, "reject", "Reject")]));
        }
        body.push(downloads(seg.mask_png, seg.mask_nifti, seg.mask_dicom, seg.model));
      } else if (seg.status === "failed") {
        body.push(el("p", { class: "error", role: "alert", text: "Failed: " + seg.error }));
      } else {
        body.push(el("p", { class: "badge status-" + seg.status, text: seg.status === "running" ? "Segmenting…" : "Queued" }));
      }
      var subtitle = seg.is_ensemble ? "Mean of the models' probabilities" : "";
      if (seg.is_primary) subtitle = (subtitle ? subtitle + " · " : "") + "primary mask";
      cards.appendChild(card(seg.model, seg.model, subtitle, body));
    });
    if (!cards.children.length) cards.appendChild(el("p", { class: "muted", text: "No model has run on this case." }));
    redraw();
  }

  function renderType() {
    // Only a clinician's or the dataset's type is recorded; a prediction stays a suggestion and is never
    // chosen in the form for the clinician.
    var source = { clinician: "entered by a clinician", imported: "imported with the dataset" };
    var recorded = state.tumour_type && source[state.tumour_type_source];
    document.getElementById("type-current").textContent = recorded ? TS.TYPE_LABELS[state.tumour_type] : "not recorded yet";
    document.getElementById("type-source").textContent = recorded ? "(" + recorded + ")" : "";
    var withheld = state.analysis && state.analysis.status !== "tumour";
    if (withheld) {
      document.getElementById("type-suggestion").textContent = "No suggestion: " + state.analysis.message.toLowerCase() + ".";
    } else if (state.predicted_tumour_type) {
      var box = document.getElementById("type-suggestion");
      box.replaceChildren("Suggested (not recorded): ", el("strong", { text: TS.TYPE_LABELS[state.predicted_tumour_type] }),
        ", confidence " + Math.round(100 * (state.predicted_confidence || 0)) + "%");
    }
    document.getElementById("type-sources").textContent = state.type_sources || "";
  }

  function renderAnalysis() {
    // Same text as templates/cases/_analysis_banner.html, for an analysis that arrives while the page is open.
    var a = state.analysis, box = document.getElementById("analysis-banner");
    if (!box) return;
    var rows = [];
    if (a && a.status !== "tumour") {
      rows.push(el("p", { class: "message warning", role: "alert", text: a.message +
        ". No tumour type is suggested and no similar cases are shown." }));
    }
    (a ? a.flags : []).forEach(function (flag) {
      rows.push(el("p", { class: "message warning", role: "alert", text: "Check this outline: " + flag.message }));
    });
    box.replaceChildren.apply(box, rows);
  }

  function apply(newState) {
    state = newState;
    document.getElementById("case-status").textContent = STATUS_TEXT[state.status] || state.status;
    document.getElementById("case-status").className = "badge status-" + state.status;
    var ms = document.getElementById("mask-state");
    ms.textContent = state.mask_state.label;
    ms.className = "badge state-" + state.mask_state.code;
    if (state.ground_truth) ensureLayer("ground_truth", "Ground truth (" + state.ground_truth.source + ")",
                                        state.ground_truth.mask_png + "?v=" + encodeURIComponent(state.ground_truth.updated_at || ""), false, true);
    state.segmentations.forEach(function (seg) {
      var label = seg.model + (seg.is_primary ? " (primary)" : "");
      ensureLayer(seg.model, label, seg.status === "done" ? seg.mask_png : null, seg.is_ensemble,
                  seg.is_primary && !state.ground_truth && seg.review_status !== "rejected");
    });
    var primary = state.segmentations.filter(function (seg) { return seg.is_primary && seg.status === "done"; })[0];
    if (primary) viewer.setProbability(ownIndex, app.dataset.probabilityUrl.replace("/runs/0/", "/runs/" + primary.id + "/"));
    renderType();
    renderAnalysis();
    renderCards();
    var flagged = state.segmentations.filter(function (seg) { return seg.is_primary && seg.agreement_flagged; })[0];
    var warning = document.getElementById("agreement-warning");
    warning.hidden = !flagged;
    warning.textContent = flagged ? "The models disagree on this slice (agreement " + flagged.agreement.toFixed(2) +
      "): check the primary outline with care." : "";
    var awaitingSuggestion = !state.predicted_tumour_type && !state.analysis && state.segmentations.length &&
      (!state.tumour_type_source || state.tumour_type_source === "predicted");
    if (state.status === "queued" || state.status === "running") {
      pollTimer = setTimeout(poll, 1500);
    } else if (awaitingSuggestion && followUps < 10) {
      // The suggestion is made just after the primary mask is stored: ask again for a short while.
      followUps += 1;
      pollTimer = setTimeout(poll, 1500);
      loadSimilar();
    } else {
      loadSimilar();
    }
  }

  function poll() {
    TS.fetchJSON(app.dataset.stateUrl).then(apply).catch(function () { pollTimer = setTimeout(poll, 5000); });
  }

  function loadSimilar() {
    if (similarDone || similarLoading) return;
    similarLoading = true;
    var box = document.getElementById("similar-list");
    fetch(app.dataset.similarUrl, { credentials: "same-origin" }).then(function (r) {
      if (!r.ok) throw new Error("HTTP " + r.status);
      // "ready", or no_tumour / not_brain_mri: final too.
      return r.text().then(function (html) { return { html: html, ready: r.headers.get("X-Similar-Status") !== "pending" }; });
    }).then(function (result) {
      similarLoading = false;
      if (result.ready) {
        similarDone = true;
        box.innerHTML = result.html;  // rendered and escaped by Django
      } else if (!state.segmentations.length) {
        similarDone = true;  // nothing will describe this case by itself: don't wait
        box.replaceChildren(el("p", { class: "muted", text: "This case is not in the similar-case search yet: " +
          "save a corrected mask, or ask an administrator to rebuild the case base." }));
      } else if (++similarTries < 15) {
        box.innerHTML = result.html;
        setTimeout(loadSimilar, 2000);
      } else {
        box.replaceChildren(el("p", { class: "muted", text: "No similar cases: this case has no usable mask yet." }));
      }
    }).catch(function () {
      similarLoading = false;
      box.replaceChildren(el("p", { class: "error", text: "Similar cases could not be loaded." }));
    });
  }

  poll();
})();
