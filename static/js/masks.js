/* Masks on a canvas: load a 0/255 PNG into a bit array, find its outline, draw it in a colour. */
window.TS = window.TS || {};

TS.loadImage = function (url) {
  return new Promise(function (resolve, reject) {
    var img = new Image();
    img.onload = function () { resolve(img); };
    img.onerror = function () { reject(new Error("Could not load " + url)); };
    img.src = url;
  });
};

TS.maskFromImage = function (img) {
  var w = img.naturalWidth, h = img.naturalHeight;
  var c = document.createElement("canvas");
  c.width = w; c.height = h;
  var cx = c.getContext("2d", { willReadFrequently: true });
  cx.drawImage(img, 0, 0);
  var rgba = cx.getImageData(0, 0, w, h).data;
  var data = new Uint8Array(w * h);
  for (var i = 0; i < data.length; i++) data[i] = rgba[i * 4] > 127 ? 1 : 0;
  return { w: w, h: h, data: data, edge: TS.maskEdges(data, w, h) };
};

/* A pixel is on the outline when it differs from one of its 4 neighbours: a 2-pixel line across the border. */
TS.maskEdges = function (m, w, h) {
  var e = new Uint8Array(w * h);
  for (var y = 0; y < h; y++) {
    for (var x = 0; x < w; x++) {
      var i = y * w + x, v = m[i];
      if ((x > 0 && m[i - 1] !== v) || (x < w - 1 && m[i + 1] !== v) ||
          (y > 0 && m[i - w] !== v) || (y < h - 1 && m[i + w] !== v)) e[i] = 1;
    }
  }
  return e;
};

/* Draw `mask` over whatever `ctx` holds. mode: "filled" or "contour"; opacity in [0, 1]. */
TS.drawMask = function (ctx, mask, colour, opacity, mode) {
  var tmp = document.createElement("canvas");
  tmp.width = mask.w; tmp.height = mask.h;
  var t = tmp.getContext("2d");
  var img = t.createImageData(mask.w, mask.h), px = img.data;
  var fill = Math.round(opacity * 255), line = Math.round(Math.min(1, opacity * 2) * 255);
  for (var i = 0; i < mask.data.length; i++) {
    var a = 0;
    if (mask.edge[i] && mask.data[i]) a = line;
    else if (mode === "filled" && mask.data[i]) a = fill;
    else if (mode === "contour" && mask.edge[i]) a = line;
    if (a) { var j = i * 4; px[j] = colour[0]; px[j + 1] = colour[1]; px[j + 2] = colour[2]; px[j + 3] = a; }
  }
  t.putImageData(img, 0, 0);
  ctx.drawImage(tmp, 0, 0, ctx.canvas.width, ctx.canvas.height);
};

TS.COLOURS = {
  ground_truth: [34, 197, 94],
  ensemble: [239, 68, 68],
  palette: [[59, 130, 246], [245, 158, 11], [168, 85, 247], [6, 182, 212], [236, 72, 153]],
};

TS.rgb = function (c) { return "rgb(" + c.join(",") + ")"; };
