/* The slice viewer: one slice or a stack of them on a canvas, with window/level, zoom and pan, a length tool,
   a pixel readout, the probability map as a heat-map and the mask outlines. No framework, no CDN.

   new TS.Viewer({ slices: [...], start: index, overlay: fn }) takes a list of slices, each
     { pixels: URL of the float32 slice (/cases/<id>/pixels.f32), mask: URL of a 0/255 outline PNG or null,
       probability: URL of an 8-bit probability PNG or null, spacing: { row: mm, col: mm } (nulls when unknown),
       label: text, case_id: id }
   and draws the current one. overlay(ctx, slice, index), when given, draws the outlines of a slice on an
   image-sized canvas and returns true; else the slice's own mask is drawn. The controls are found by their ids
   in the page (templates/cases/case_detail.html, section "viewer"). */
window.TS = window.TS || {};

(function () {
  var ZOOM_STEP = 1.25, ZOOM_MIN = 0.25, ZOOM_MAX = 32, PAN_STEP = 20;
  // Probabilities below this are not coloured: the map shows where the model sees tumour, not everywhere.
  var HEAT_FLOOR = 0.1;
  // The heat-map's colours: blue (p = 0.1) through cyan and yellow to red (p = 1).
  var HEAT_STOPS = [[0, [0, 0, 255]], [0.35, [0, 255, 255]], [0.65, [255, 255, 0]], [1, [255, 0, 0]]];

  /* The linear VOI function of DICOM PS3.3 C.11.2.1.2.1: values up to c - 0.5 - (w - 1)/2 are black, above
     c - 0.5 + (w - 1)/2 white, linear in between. */
  TS.windowLevel = function (value, center, width) {
    var low = center - 0.5 - (width - 1) / 2, high = center - 0.5 + (width - 1) / 2;
    if (value <= low) return 0;
    if (value > high) return 255;
    return Math.round(((value - (center - 0.5)) / (width - 1) + 0.5) * 255);
  };

  TS.heatColour = function (p) {
    for (var i = 1; i < HEAT_STOPS.length; i++) {
      var a = HEAT_STOPS[i - 1], b = HEAT_STOPS[i];
      if (p <= b[0]) {
        var t = (p - a[0]) / (b[0] - a[0]);
        return [0, 1, 2].map(function (k) { return Math.round(a[1][k] + t * (b[1][k] - a[1][k])); });
      }
    }
    return HEAT_STOPS[HEAT_STOPS.length - 1][1].slice();
  };

  function $(id) { return document.getElementById(id); }

  function formatValue(v) {
    return Number.isInteger(v) ? String(v) : v.toFixed(Math.abs(v) >= 100 ? 1 : 3);
  }

  function imageCanvas(w, h) {
    var c = document.createElement("canvas");
    c.width = w; c.height = h;
    return c;
  }

  /* The slice's values and what the server said about them (clinic.views.pictures.case_pixels_view). */
  function loadPixels(url) {
    return fetch(url, { credentials: "same-origin" }).then(function (r) {
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.arrayBuffer().then(function (buffer) {
        var range = (r.headers.get("X-Value-Range") || "0 0").split(" ").map(Number);
        return {
          w: Number(r.headers.get("X-Width")), h: Number(r.headers.get("X-Height")),
          values: new Float32Array(buffer), min: range[0], max: range[1],
          units: r.headers.get("X-Units") || "value", invert: r.headers.get("X-Invert") === "1",
          windows: JSON.parse(r.headers.get("X-Windows") || "[]"),
        };
      });
    });
  }

  function loadProbability(url) {
    return TS.loadImage(url).then(function (img) {
      var c = imageCanvas(img.naturalWidth, img.naturalHeight);
      var cx = c.getContext("2d", { willReadFrequently: true });
      cx.drawImage(img, 0, 0);
      var rgba = cx.getImageData(0, 0, c.width, c.height).data, p = new Float32Array(c.width * c.height);
      for (var i = 0; i < p.length; i++) p[i] = rgba[i * 4] / 255;
      return { w: c.width, h: c.height, p: p };
    });
  }

  TS.Viewer = function (options) {
    var self = this;
    this.slices = options.slices.map(function (s) {
      return Object.assign({ measurements: [], data: null, heat: null, maskData: null }, s);
    });
    this.overlay = options.overlay || null;
    this.canvas = $("viewer-canvas");
    this.ctx = this.canvas.getContext("2d");
    this.index = 0;
    this.wl = null;  // {center, width}
    this.view = { zoom: 1, panX: 0, panY: 0 };
    this.tool = "wl";
    this.pending = null;  // the first point of a length being drawn (image coordinates)
    this.hover = null;    // where the pointer (or the keyboard cursor) is, image coordinates
    this.heatOn = $("heat-toggle") ? $("heat-toggle").checked : true;
    this.heatOpacity = $("heat-opacity") ? $("heat-opacity").value / 100 : 0.5;
    this.bind();
    this.showSlice(options.start || 0);
    TS.viewer = this;  // for the page's other scripts and the browser tests
    return self;
  };

  var V = TS.Viewer.prototype;

  V.current = function () { return this.slices[this.index]; };

  /* === Geometry: image coordinates (pixel i covers [i, i + 1)) <-> canvas pixels === */
  V.scale = function () {
    var d = this.current().data;
    if (!d) return 1;
    return Math.min(this.canvas.width / d.w, this.canvas.height / d.h) * this.view.zoom;
  };
  V.origin = function () {
    var d = this.current().data, s = this.scale();
    return [(this.canvas.width - d.w * s) / 2 + this.view.panX, (this.canvas.height - d.h * s) / 2 + this.view.panY];
  };
  V.imageToCanvas = function (x, y) {
    var o = this.origin(), s = this.scale();
    return [o[0] + x * s, o[1] + y * s];
  };
  V.canvasToImage = function (cx, cy) {
    var o = this.origin(), s = this.scale();
    return [(cx - o[0]) / s, (cy - o[1]) / s];
  };
  V.eventToCanvas = function (event) {
    var box = this.canvas.getBoundingClientRect();
    return [(event.clientX - box.left) * this.canvas.width / box.width,
            (event.clientY - box.top) * this.canvas.height / box.height];
  };

  /* === Slices === */
  V.showSlice = function (index) {
    var self = this;
    if (index < 0 || index >= this.slices.length) return;
    this.index = index;
    this.pending = null;
    var slice = this.current();
    var slider = $("viewer-slice");
    if (slider) { slider.value = String(index + 1); }
    if ($("viewer-slice-label")) {
      $("viewer-slice-label").textContent = "Slice " + (index + 1) + " of " + this.slices.length +
        (slice.label ? " (" + slice.label + ")" : "");
    }
    if (!slice.data) {
      loadPixels(slice.pixels).then(function (data) {
        slice.data = data;
        slice.gray = null;
        if (!self.wl) self.applyPreset(0);
        self.fillPresets();
        self.loadLayers(slice);
        if (self.current() === slice) self.render();
      }).catch(function () { self.say("The slice could not be loaded."); });
    } else {
      this.fillPresets();
      this.loadLayers(slice);
      this.render();
    }
    this.showMeasurements();
    this.showSpacing();
  };

  V.step = function (delta) { this.showSlice(Math.max(0, Math.min(this.slices.length - 1, this.index + delta))); };

  V.loadLayers = function (slice) {
    var self = this;
    // The probability map is fetched when the heat-map is first shown, not with every slice.
    if (this.heatOn && slice.probability && !slice.heat && !slice.heatLoading && !slice.heatFailed) {
      slice.heatLoading = true;
      loadProbability(slice.probability).then(function (prob) {
        slice.heat = prob; slice.heatCanvas = null; slice.heatLoading = false; self.render(); self.showHeatState();
      }).catch(function () { slice.heatLoading = false; slice.heatFailed = true; self.showHeatState(); });
    }
    if (!this.overlay && slice.mask && !slice.maskData) {
      TS.loadImage(slice.mask).then(function (img) { slice.maskData = TS.maskFromImage(img); self.render(); })
        .catch(function () { slice.maskData = false; });
    }
    this.showHeatState();
  };

  /* The page's own slice gets its probability map once a run has made one. */
  V.setProbability = function (index, url) {
    var slice = this.slices[index];
    if (!slice || slice.probability === url) return;
    slice.probability = url; slice.heat = null; slice.heatCanvas = null; slice.heatFailed = false;
    if (index === this.index) this.loadLayers(slice);
  };

  /* === Window / level === */
  V.fillPresets = function () {
    var select = $("wl-preset"), d = this.current().data;
    if (!select || !d) return;
    select.replaceChildren(TS.el("option", { value: "", text: "Choose a preset…" }));
    d.windows.forEach(function (p, i) {
      select.appendChild(TS.el("option", { value: String(i),
        text: p.label + " (L " + formatValue(p.center) + ", W " + formatValue(p.width) + ")" }));
    });
  };

  V.applyPreset = function (i) {
    var d = this.current().data, p = d && d.windows[i];
    if (p) this.setWindow(p.center, p.width);
  };

  V.setWindow = function (center, width) {
    if (!isFinite(center) || !isFinite(width)) return;
    // Kept to two decimals: the window drawn is the one the Level and Width fields show.
    this.wl = { center: Math.round(center * 100) / 100, width: Math.max(1, Math.round(width * 100) / 100) };
    this.slices.forEach(function (s) { s.gray = null; });
    if ($("wl-center")) $("wl-center").value = String(this.wl.center);
    if ($("wl-width")) $("wl-width").value = String(this.wl.width);
    this.render();
  };

  V.grayCanvas = function (slice) {
    if (slice.gray) return slice.gray;
    var d = slice.data, c = imageCanvas(d.w, d.h), cx = c.getContext("2d");
    var img = cx.createImageData(d.w, d.h), px = img.data, wl = this.wl;
    for (var i = 0; i < d.values.length; i++) {
      var g = TS.windowLevel(d.values[i], wl.center, wl.width);
      if (d.invert) g = 255 - g;  // MONOCHROME1: low values white
      var j = i * 4;
      px[j] = px[j + 1] = px[j + 2] = g; px[j + 3] = 255;
    }
    cx.putImageData(img, 0, 0);
    slice.gray = c;
    return c;
  };

  /* === Heat-map === */
  V.heatCanvas = function (slice) {
    if (slice.heatCanvas) return slice.heatCanvas;
    var h = slice.heat, c = imageCanvas(h.w, h.h), cx = c.getContext("2d");
    var img = cx.createImageData(h.w, h.h), px = img.data, alpha = Math.round(this.heatOpacity * 255);
    for (var i = 0; i < h.p.length; i++) {
      if (h.p[i] < HEAT_FLOOR) continue;
      var colour = TS.heatColour(h.p[i]), j = i * 4;
      px[j] = colour[0]; px[j + 1] = colour[1]; px[j + 2] = colour[2]; px[j + 3] = alpha;
    }
    cx.putImageData(img, 0, 0);
    slice.heatCanvas = c;
    return c;
  };

  V.showHeatState = function () {
    var note = $("heat-note"), slice = this.current();
    if (!note) return;
    note.textContent = slice.heat ? "" : slice.heatFailed ? "The probability map could not be loaded." :
      slice.probability ? (this.heatOn ? "Loading the probability map…" : "") :
      "No probability map yet (it comes with the primary model's mask).";
  };

  /* === Drawing === */
  V.render = function () {
    var ctx = this.ctx, slice = this.current(), d = slice.data;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
    if (!d || !this.wl) return;
    var o = this.origin(), s = this.scale();
    ctx.imageSmoothingEnabled = false;  // each pixel a square: what the readout and the ruler point at
    ctx.setTransform(s, 0, 0, s, o[0], o[1]);
    ctx.drawImage(this.grayCanvas(slice), 0, 0);
    if (this.heatOn && slice.heat && slice.heat.w === d.w && slice.heat.h === d.h) {
      ctx.drawImage(this.heatCanvas(slice), 0, 0);
    }
    var layer = imageCanvas(d.w, d.h), lctx = layer.getContext("2d");
    var drawn = this.overlay ? this.overlay(lctx, slice, this.index) : false;
    if (!drawn && slice.maskData) TS.drawMask(lctx, slice.maskData, TS.COLOURS.ensemble, 0.45, "contour");
    ctx.drawImage(layer, 0, 0);
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    this.drawMeasurements();
  };

  V.drawLine = function (a, b, text) {
    var ctx = this.ctx, p = this.imageToCanvas(a[0], a[1]), q = this.imageToCanvas(b[0], b[1]);
    ctx.lineWidth = 2;
    ctx.strokeStyle = "#ffd400";
    ctx.beginPath(); ctx.moveTo(p[0], p[1]); ctx.lineTo(q[0], q[1]); ctx.stroke();
    [p, q].forEach(function (end) { ctx.fillStyle = "#ffd400"; ctx.fillRect(end[0] - 3, end[1] - 3, 6, 6); });
    if (text) {
      ctx.font = "bold 14px system-ui, sans-serif";
      ctx.lineWidth = 3; ctx.strokeStyle = "#000"; ctx.fillStyle = "#ffd400";
      ctx.strokeText(text, q[0] + 8, q[1] - 8); ctx.fillText(text, q[0] + 8, q[1] - 8);
    }
  };

  V.drawMeasurements = function () {
    var self = this, slice = this.current();
    slice.measurements.forEach(function (m) { self.drawLine(m.a, m.b, self.lengthText(m.a, m.b)); });
    if (this.pending && this.hover) this.drawLine(this.pending, this.hover, this.lengthText(this.pending, this.hover));
    if (this.tool === "length" && this.hover && document.activeElement === this.canvas) {
      var c = this.imageToCanvas(this.hover[0], this.hover[1]), ctx = this.ctx;
      ctx.strokeStyle = "#00e5ff"; ctx.lineWidth = 1;
      ctx.beginPath(); ctx.moveTo(c[0] - 10, c[1]); ctx.lineTo(c[0] + 10, c[1]);
      ctx.moveTo(c[0], c[1] - 10); ctx.lineTo(c[0], c[1] + 10); ctx.stroke();
    }
  };

  /* === Length === */
  /* Row spacing is between rows (along y), column spacing between columns (along x): DICOM Pixel Spacing,
     PS3.3 10.7.1.3. A scan with only one known spacing has square pixels. */
  V.length = function (a, b) {
    var sp = this.current().spacing || {}, row = sp.row, col = sp.col || sp.row;
    var dx = b[0] - a[0], dy = b[1] - a[1];
    if (row) return { value: Math.hypot(dx * col, dy * row), mm: true };
    return { value: Math.hypot(dx, dy), mm: false };
  };

  V.lengthText = function (a, b) {
    var l = this.length(a, b);
    return l.mm ? l.value.toFixed(1) + " mm" : l.value.toFixed(1) + " px";
  };

  V.placePoint = function (point) {
    if (!this.pending) {
      this.pending = point;
    } else {
      this.current().measurements.push({ a: this.pending, b: point });
      this.pending = null;
      this.showMeasurements();
    }
    this.render();
  };

  V.showMeasurements = function () {
    var list = $("viewer-measurements"), self = this;
    if (!list) return;
    var items = this.current().measurements.map(function (m, i) {
      var l = self.length(m.a, m.b);
      return TS.el("li", { text: "Length " + (i + 1) + ": " + (l.mm ? l.value.toFixed(1) + " mm" :
        l.value.toFixed(1) + " px (pixel spacing unknown: in pixels, not mm)") });
    });
    list.replaceChildren.apply(list, items);
  };

  V.showSpacing = function () {
    var note = $("viewer-spacing"), sp = this.current().spacing || {};
    if (!note) return;
    note.textContent = sp.row ? "Lengths in mm (pixel spacing " + sp.row.toFixed(3) + " × " +
      (sp.col || sp.row).toFixed(3) + " mm, row × column)." :
      "Pixel spacing unknown: lengths are in pixels, not mm.";
  };

  /* === Zoom and pan === */
  V.zoomBy = function (factor, at) {
    var zoom = Math.max(ZOOM_MIN, Math.min(ZOOM_MAX, this.view.zoom * factor));
    if (!this.current().data) return;
    var anchor = at || [this.canvas.width / 2, this.canvas.height / 2];
    var before = this.canvasToImage(anchor[0], anchor[1]);
    this.view.zoom = zoom;
    var after = this.imageToCanvas(before[0], before[1]);  // keep the image point under the anchor
    this.view.panX += anchor[0] - after[0];
    this.view.panY += anchor[1] - after[1];
    this.render();
    this.say("Zoom " + Math.round(zoom * 100) + "%");
  };

  V.panBy = function (dx, dy) { this.view.panX += dx; this.view.panY += dy; this.render(); };

  V.reset = function () {
    this.view = { zoom: 1, panX: 0, panY: 0 };
    var d = this.current().data;
    if (d && d.windows.length) this.applyPreset(0);
    this.render();
    this.say("View reset");
  };

  V.setTool = function (tool) {
    this.tool = tool;
    this.pending = null;
    document.querySelectorAll("[data-viewer-tool]").forEach(function (button) {
      button.setAttribute("aria-pressed", String(button.dataset.viewerTool === tool));
    });
    this.canvas.dataset.tool = tool;
    this.render();
  };

  V.say = function (text) { var s = $("viewer-status"); if (s) s.textContent = text; };

  V.readout = function (point) {
    var out = $("viewer-readout"), d = this.current().data;
    if (!out || !d) return;
    var x = Math.floor(point[0]), y = Math.floor(point[1]);
    if (x < 0 || y < 0 || x >= d.w || y >= d.h) { out.textContent = "Outside the image"; return; }
    out.textContent = "x " + x + ", y " + y + ": " + formatValue(d.values[y * d.w + x]) + " " + d.units;
  };

  /* === Input === */
  V.bind = function () {
    var self = this, canvas = this.canvas, drag = null;
    canvas.addEventListener("contextmenu", function (e) { e.preventDefault(); });
    canvas.addEventListener("pointerdown", function (e) {
      var at = self.eventToCanvas(e);
      var mode = e.button === 2 ? "wl" : self.tool;
      if (mode === "length") { self.placePoint(self.canvasToImage(at[0], at[1])); return; }
      drag = { mode: mode, x: at[0], y: at[1], wl: Object.assign({}, self.wl) };
      canvas.setPointerCapture(e.pointerId);
    });
    canvas.addEventListener("pointermove", function (e) {
      var at = self.eventToCanvas(e);
      self.hover = self.canvasToImage(at[0], at[1]);
      self.readout(self.hover);
      if (drag && drag.mode === "wl" && drag.wl) {
        var d = self.current().data, k = Math.max(d.max - d.min, 1) / 500;
        // Left-right: width (contrast); up-down: level (brightness), as in most radiology viewers.
        self.setWindow(drag.wl.center + (at[1] - drag.y) * k, drag.wl.width + (at[0] - drag.x) * k);
      } else if (drag && drag.mode === "pan") {
        self.panBy(at[0] - drag.x, at[1] - drag.y);
        drag.x = at[0]; drag.y = at[1];
      } else if (self.pending) {
        self.render();
      }
    });
    canvas.addEventListener("pointerup", function () { drag = null; });
    canvas.addEventListener("pointerleave", function () { if ($("viewer-readout")) $("viewer-readout").textContent = ""; });
    canvas.addEventListener("wheel", function (e) {
      e.preventDefault();
      if (self.slices.length > 1 && !e.ctrlKey && !e.metaKey) { self.step(e.deltaY > 0 ? 1 : -1); return; }
      self.zoomBy(e.deltaY < 0 ? ZOOM_STEP : 1 / ZOOM_STEP, self.eventToCanvas(e));
    }, { passive: false });
    canvas.addEventListener("focus", function () {
      var d = self.current().data;
      if (d && !self.hover) self.hover = [d.w / 2, d.h / 2];
      self.render();
    });
    canvas.addEventListener("blur", function () { self.render(); });
    canvas.addEventListener("keydown", function (e) { if (self.key(e)) e.preventDefault(); });

    document.querySelectorAll("[data-viewer-tool]").forEach(function (button) {
      button.addEventListener("click", function () { self.setTool(button.dataset.viewerTool); });
    });
    var on = function (id, type, fn) { var node = $(id); if (node) node.addEventListener(type, fn); };
    on("zoom-in", "click", function () { self.zoomBy(ZOOM_STEP); });
    on("zoom-out", "click", function () { self.zoomBy(1 / ZOOM_STEP); });
    on("zoom-reset", "click", function () { self.reset(); });
    on("wl-preset", "change", function () {
      if ($("wl-preset").value !== "") self.applyPreset(Number($("wl-preset").value));
    });
    on("wl-center", "change", function () { self.setWindow(Number($("wl-center").value), self.wl.width); });
    on("wl-width", "change", function () { self.setWindow(self.wl.center, Number($("wl-width").value)); });
    on("measure-clear", "click", function () {
      self.current().measurements = []; self.pending = null; self.showMeasurements(); self.render();
    });
    on("heat-toggle", "change", function () {
      self.heatOn = $("heat-toggle").checked;
      self.loadLayers(self.current());
      self.render();
    });
    on("heat-opacity", "input", function () {
      self.heatOpacity = $("heat-opacity").value / 100;
      if ($("heat-opacity-value")) $("heat-opacity-value").textContent = $("heat-opacity").value + "%";
      self.slices.forEach(function (s) { s.heatCanvas = null; });
      self.render();
    });
    var slider = $("viewer-slice");
    if (slider) {
      slider.max = String(this.slices.length);
      slider.closest(".stack-control").hidden = this.slices.length < 2;
      slider.addEventListener("input", function () { self.showSlice(Number(slider.value) - 1); });
    }
  };

  /* The canvas's keys (listed in the help line under it). True when the key was used. */
  V.key = function (e) {
    var k = e.key, measuring = this.tool === "length" && this.hover;
    var arrows = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
    if (e.ctrlKey || e.metaKey || e.altKey) return false;
    if (k === "+" || k === "=") this.zoomBy(ZOOM_STEP);
    else if (k === "-" || k === "_") this.zoomBy(1 / ZOOM_STEP);
    else if (k === "0" || k === "r" || k === "R") this.reset();
    else if (k === "PageDown") this.step(1);
    else if (k === "PageUp") this.step(-1);
    else if (k === "w" || k === "W") this.setTool("wl");
    else if (k === "p" || k === "P") this.setTool("pan");
    else if (k === "l" || k === "L") this.setTool("length");
    else if (k === "h" || k === "H") {
      var box = $("heat-toggle");
      if (box) { box.checked = !box.checked; box.dispatchEvent(new Event("change")); }
    } else if (k === "Escape") { this.pending = null; this.render(); }
    else if (arrows[k] && measuring) {
      // The length tool's keyboard cursor moves one pixel (ten with Shift).
      var n = e.shiftKey ? 10 : 1;
      this.hover = [this.hover[0] + arrows[k][0] * n, this.hover[1] + arrows[k][1] * n];
      this.readout(this.hover);
      this.render();
    } else if (arrows[k]) this.panBy(arrows[k][0] * PAN_STEP, arrows[k][1] * PAN_STEP);
    else if ((k === "Enter" || k === " ") && measuring) {
      this.placePoint([Math.floor(this.hover[0]) + 0.5, Math.floor(this.hover[1]) + 0.5]);
    } else return false;
    return true;
  };
})();
