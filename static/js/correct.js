/* Mask correction: brush and eraser on a canvas over the slice, with undo; saved as a PNG data URL. */
(function () {
  var app = document.getElementById("correct-app");
  if (!app) return;
  var sliceCanvas = document.getElementById("slice-layer");
  var maskCanvas = document.getElementById("mask-layer");
  var mctx = maskCanvas.getContext("2d", { willReadFrequently: true });
  var form = document.getElementById("correct-form");
  var sizeInput = document.getElementById("brush-size");
  var undoButton = document.getElementById("undo");
  var statusBox = document.getElementById("editor-status");
  var PAINT = "rgb(255, 48, 48)";
  var history = [], drawing = false, last = null, dirty = false;
  // Edits wait for the starting mask: a mask arriving after a stroke or a Clear would overwrite it.
  var ready = false;
  function markReady(message) {
    ready = true;
    app.dataset.ready = "true";
    if (message) statusBox.textContent = message;
  }

  function load(url) {
    return new Promise(function (resolve, reject) {
      var img = new Image();
      img.onload = function () { resolve(img); };
      img.onerror = reject;
      img.src = url;
    });
  }

  // A 0/255 mask picture onto the canvas: white (tumour) becomes opaque paint, black transparent.
  function paintMask(img) {
    var tmp = document.createElement("canvas");
    tmp.width = maskCanvas.width; tmp.height = maskCanvas.height;
    var t = tmp.getContext("2d");
    t.drawImage(img, 0, 0, tmp.width, tmp.height);
    var src = t.getImageData(0, 0, tmp.width, tmp.height);
    var out = mctx.createImageData(tmp.width, tmp.height);
    for (var i = 0; i < src.data.length; i += 4) {
      if (src.data[i] > 127) { out.data[i] = 255; out.data[i + 1] = 48; out.data[i + 2] = 48; out.data[i + 3] = 255; }
    }
    mctx.putImageData(out, 0, 0);
  }

  load(app.dataset.sliceUrl).then(function (img) { sliceCanvas.getContext("2d").drawImage(img, 0, 0); });
  if (app.dataset.maskUrl) {
    load(app.dataset.maskUrl).then(function (img) {
      paintMask(img);
      markReady("Starting from the current mask.");
    }).catch(function () {
      markReady("The current mask could not be loaded: paint the tumour, or reload the page.");
    });
  } else {
    markReady();
  }

  function setOpacity() { maskCanvas.style.opacity = document.getElementById("mask-opacity").value / 100; }
  document.getElementById("mask-opacity").addEventListener("input", setOpacity);
  setOpacity();
  sizeInput.addEventListener("input", function () { document.getElementById("brush-size-value").textContent = sizeInput.value; });

  function tool() { return form.elements.tool.value; }

  function snapshot() {
    history.push(mctx.getImageData(0, 0, maskCanvas.width, maskCanvas.height));
    if (history.length > 30) history.shift();
    undoButton.disabled = false;
  }

  function undo() {
    if (!history.length) return;
    mctx.putImageData(history.pop(), 0, 0);
    undoButton.disabled = history.length === 0;
    statusBox.textContent = "Undone.";
  }

  function point(e) {
    var r = maskCanvas.getBoundingClientRect();
    return { x: (e.clientX - r.left) * (maskCanvas.width / r.width), y: (e.clientY - r.top) * (maskCanvas.height / r.height) };
  }

  function stroke(from, to) {
    var scale = maskCanvas.width / maskCanvas.getBoundingClientRect().width;
    mctx.globalCompositeOperation = tool() === "eraser" ? "destination-out" : "source-over";
    mctx.strokeStyle = mctx.fillStyle = PAINT;
    mctx.lineWidth = sizeInput.value * scale;
    mctx.lineCap = mctx.lineJoin = "round";
    mctx.beginPath();
    mctx.moveTo(from.x, from.y);
    mctx.lineTo(to.x + 0.01, to.y);
    mctx.stroke();
    mctx.globalCompositeOperation = "source-over";
  }

  maskCanvas.addEventListener("pointerdown", function (e) {
    e.preventDefault();
    if (!ready) return;
    maskCanvas.setPointerCapture(e.pointerId);
    snapshot();
    drawing = true; dirty = true;
    last = point(e);
    stroke(last, last);
  });
  maskCanvas.addEventListener("pointermove", function (e) {
    if (!drawing) return;
    var p = point(e);
    stroke(last, p);
    last = p;
  });
  ["pointerup", "pointercancel"].forEach(function (name) {
    maskCanvas.addEventListener(name, function () {
      if (drawing) statusBox.textContent = tool() === "eraser" ? "Erased part of the mask." : "Painted.";
      drawing = false;
    });
  });

  // Keyboard drawing: a pen the arrow keys move over the slice; Space stamps, Shift+arrow draws a line.
  var penBox = document.getElementById("pen");
  var pen = { x: maskCanvas.width / 2, y: maskCanvas.height / 2 };
  function showPen() {
    var r = maskCanvas.getBoundingClientRect(), k = r.width / maskCanvas.width, size = Number(sizeInput.value);
    penBox.hidden = false;
    penBox.style.width = penBox.style.height = size + "px";
    penBox.style.left = (pen.x * k - size / 2) + "px";
    penBox.style.top = (pen.y * k - size / 2) + "px";
  }
  maskCanvas.addEventListener("focus", showPen);
  maskCanvas.addEventListener("blur", function () { penBox.hidden = true; });
  maskCanvas.addEventListener("keydown", function (e) {
    if (!ready) return;
    var step = maskCanvas.width / maskCanvas.getBoundingClientRect().width * 4;
    var moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
    if (moves[e.key]) {
      e.preventDefault();
      var from = { x: pen.x, y: pen.y };
      pen.x = Math.min(maskCanvas.width - 1, Math.max(0, pen.x + moves[e.key][0]));
      pen.y = Math.min(maskCanvas.height - 1, Math.max(0, pen.y + moves[e.key][1]));
      if (e.shiftKey) {
        if (!e.repeat) snapshot();
        stroke(from, pen);
        dirty = true;
      }
      showPen();
    } else if (e.key === " " || e.key === "Enter") {
      e.preventDefault();
      snapshot();
      stroke(pen, pen);
      dirty = true;
      statusBox.textContent = tool() === "eraser" ? "Erased at the pen." : "Painted at the pen.";
    }
  });

  undoButton.addEventListener("click", undo);
  document.querySelectorAll("button.other-region").forEach(function (button) {
    button.addEventListener("click", function () {
      if (!ready) return;
      var label = button.textContent.trim().replace(/^Start from r/, "R");
      load(button.dataset.regionUrl).then(function (img) {
        snapshot();
        paintMask(img);
        dirty = true;
        statusBox.textContent = label + " of the models' lower-confidence regions: correct it, then save.";
      }).catch(function () {
        statusBox.textContent = "That region could not be loaded: reload the page.";
      });
    });
  });
  document.getElementById("clear").addEventListener("click", function () {
    if (!ready) return;
    snapshot();
    mctx.clearRect(0, 0, maskCanvas.width, maskCanvas.height);
    dirty = true;
    statusBox.textContent = "Cleared. Paint the tumour, or undo.";
  });
  document.addEventListener("keydown", function (e) {
    if (e.target.matches("input[type=text], textarea")) return;
    if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "z") { e.preventDefault(); undo(); }
    else if (!e.ctrlKey && !e.metaKey && e.key.toLowerCase() === "b") form.elements.tool.value = "brush";
    else if (!e.ctrlKey && !e.metaKey && e.key.toLowerCase() === "e") form.elements.tool.value = "eraser";
  });

  form.addEventListener("submit", function (e) {
    if (!ready) {  // the canvas does not hold the starting mask yet: saving now would lose it
      e.preventDefault();
      statusBox.textContent = "Still loading the current mask: try again in a moment.";
      return;
    }
    document.getElementById("mask-data").value = maskCanvas.toDataURL("image/png");
    dirty = false;
  });
  window.addEventListener("beforeunload", function (e) { if (dirty) { e.preventDefault(); e.returnValue = ""; } });
})();
