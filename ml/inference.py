"""Inference: load each segmenter once per process, call it through a ``tf.function`` in batches.

A *bundle* is ``<name>.keras`` (graph + weights, no optimizer state) beside ``<name>.json``
(metadata: spec, threshold, post-processing, metrics, provenance). Inputs of any size are min-max
normalised, resized to the model's input size and the probabilities are resized back to the input's
original size (bilinear), so masks always match the uploaded image.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import json
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ml.data import normalise
from ml.postprocess import binarize, postprocess_options

_CACHE: dict[tuple, Segmenter] = {}
_GROUPS: dict[tuple, object] = {}  # predict_proba_together's graph per set of segmenters
_CACHE_LOCK = threading.Lock()


def file_sha256(file: str | Path | BinaryIO) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks: a path (a bundle's weights), or a binary file already
    open (a stored scan opened through Django's storage API, which may not be on a local disk)."""
    if isinstance(file, str | Path):
        with open(file, "rb") as fh:
            return file_sha256(fh)
    digest = hashlib.sha256()
    for block in iter(lambda: file.read(1 << 20), b""):
        digest.update(block)
    return digest.hexdigest()


def read_metadata(keras_path: str | Path) -> dict:
    path = Path(keras_path).with_suffix(".json")
    if not path.is_file():
        raise FileNotFoundError(
            f"Model metadata {path} is missing: every .keras bundle needs its .json beside it."
        )
    return json.loads(path.read_text())


def cpu_has_fast_bf16() -> bool:
    """True when the CPU has AMX or AVX512-BF16 units (Linux: read from /proc/cpuinfo)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_precision(precision: str) -> str:
    """'auto' -> 'bf16' on CPUs with native bf16 (AMX/AVX512-BF16) or a GPU, else 'fp32'.

    Without those units TensorFlow emulates bf16 and it is far slower: on an AVX2-only AMD EPYC a
    U-Net training step took 7.6x longer in mixed_bfloat16 than in float32.
    """
    if precision != "auto":
        return precision
    import tensorflow as tf  # noqa: PLC0415 (TensorFlow loads lazily: the web process imports ml.inference)

    return "bf16" if cpu_has_fast_bf16() or tf.config.list_physical_devices("GPU") else "fp32"


def set_precision(precision: str) -> str:
    """Set Keras' global dtype policy: 'bf16' -> mixed_bfloat16, 'fp32' -> float32, 'auto' -> either."""
    import keras  # noqa: PLC0415 (TensorFlow loads lazily: the web process imports ml.inference)

    policies = {"bf16": "mixed_bfloat16", "fp32": "float32"}
    precision = resolve_precision(precision)
    if precision not in policies:
        raise ValueError(f"precision must be one of auto, {', '.join(policies)}; got {precision!r}.")
    keras.mixed_precision.set_global_policy(policies[precision])
    return precision


RUNTIMES = ("tensorflow", "openvino")


@functools.lru_cache
def resolve_runtime(runtime: str) -> str:
    """'auto' -> 'openvino' when it is installed and TensorFlow sees no GPU, else 'tensorflow'.

    The same float32 graph runs about twice as fast under OpenVINO's CPU plugin as under TensorFlow on
    2 cores (``benchmarks/segmentation.py --runtimes``), with maps equal to TensorFlow's within 1e-5
    (``tests/ml/test_openvino_runtime.py``)."""
    if runtime not in ("auto", *RUNTIMES):
        raise ValueError(f"runtime must be one of auto, {', '.join(RUNTIMES)}; got {runtime!r}.")
    if runtime != "auto":
        return runtime
    if importlib.util.find_spec("openvino") is None:
        return "tensorflow"
    import tensorflow as tf  # noqa: PLC0415 (TensorFlow loads lazily: the web process imports ml.inference)

    return "tensorflow" if tf.config.list_physical_devices("GPU") else "openvino"


def openvino_forward(function, precision: str | None, *, streams: bool = False) -> OpenVinoForward:
    """``function`` (a ``tf.function`` with an input signature) compiled for the CPU by OpenVINO: a
    callable from a numpy batch to a numpy array (``OpenVinoForward``). ``precision`` 'bf16' lets OpenVINO
    compute in bfloat16 (on AMX or AVX512-BF16); anything else keeps float32, which OpenVINO would
    otherwise leave on such CPUs.

    ``streams`` False compiles for latency: one request, every core on each layer (a batch of one, as the
    embedding is). True compiles for throughput: OpenVINO's streams (on 2 cores, two of one thread each),
    and a batch is split over them (``OpenVinoForward``). A segmentation batch of views runs faster so, and
    faster still when the web process or the database takes a share of a core: a stream's thread waits for
    no other at each layer (``benchmarks/pipeline.py``, 'OpenVINO streams').

    The graph is frozen (variables to constants) and read by the runtime's TensorFlow front end, not by
    ``openvino.convert_model``: the conversion tool reports usage to Intel unless opted out, the runtime
    does not (``tests/ml/test_openvino_runtime.py`` checks that no connection is opened).
    """
    import openvino as ov  # noqa: PLC0415 (only a worker that serves with OpenVINO needs it)
    from tensorflow.python.framework.convert_to_constants import (  # noqa: PLC0415 (TensorFlow loads lazily)
        convert_variables_to_constants_v2,
    )

    frozen = convert_variables_to_constants_v2(function.get_concrete_function())
    core = ov.Core()
    with tempfile.TemporaryDirectory(prefix="tumorsite-ov-") as directory:
        graph = Path(directory) / "model.pb"
        graph.write_bytes(frozen.graph.as_graph_def().SerializeToString())
        model = core.read_model(str(graph))
    return OpenVinoForward(core, model, "bf16" if precision == "bf16" else "f32", streams=streams)


class OpenVinoForward:
    """A model compiled by OpenVINO for the CPU: ``forward(x)`` for a batch's output, or ``forward.start(x)``
    to start it and go on (another model's batch, say) until ``result()`` is called. With ``streams`` a
    batch of several samples is split into one consecutive part per request of the throughput-compiled
    model (each sample's output does not depend on the others', so the parts put together are the batch's
    output); a single sample runs on a latency-compiled one, made when first needed, on every core. Not
    for two threads at once (a segmenter's lock guards it)."""

    def __init__(self, core, model, precision: str, *, streams: bool):
        self._core, self._model, self._precision = core, model, precision
        self._latency = None
        self._throughput = None
        if streams:
            compiled = self._compile("THROUGHPUT")
            n = max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
            self._throughput = [compiled.create_infer_request() for _ in range(n)]
        else:
            self._latency = [self._compile("LATENCY").create_infer_request()]

    def _compile(self, hint: str):
        return self._core.compile_model(
            self._model, "CPU", {"PERFORMANCE_HINT": hint, "INFERENCE_PRECISION_HINT": self._precision}
        )

    def _requests(self, n: int) -> list:
        if self._throughput is not None and (n > 1 or len(self._throughput) == 1):
            return self._throughput
        if self._latency is None:
            self._latency = [self._compile("LATENCY").create_infer_request()]
        return self._latency

    def start(self, x: np.ndarray):
        """Start ``x`` (``(N, ...)``) on the requests; returns ``result``, which waits for the output."""
        x = np.ascontiguousarray(x, np.float32)
        requests = self._requests(len(x))
        parts = np.array_split(x, min(len(requests), len(x))) if len(x) else [x]
        busy = list(zip(requests, parts, strict=False))
        for request, part in busy:
            request.start_async({0: part})

        def result() -> np.ndarray:
            out = []
            for request, _ in busy:
                request.wait()
                out.append(request.get_output_tensor(0).data.copy())
            return out[0] if len(out) == 1 else np.concatenate(out)

        return result

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.start(x)()


def check_scales(scales) -> tuple[float, ...]:
    """Zoom factors for test-time augmentation, as a tuple; at least one must be <= 1, so that every pixel of
    the slice is covered by some view."""
    scales = tuple(float(s) for s in scales)
    if not scales or any(not 0.5 <= s <= 2.0 for s in scales) or min(scales) > 1.0:
        raise ValueError(
            f"tta_scales must be zoom factors in [0.5, 2] with at least one <= 1; got {list(scales)}."
        )
    return scales


def zoom_view(image: np.ndarray, scale: float):
    """The slice as the model sees it at zoom ``scale``, and how to map a probability map of that view
    back onto the slice: ``(view, place)`` with ``place(prob_of_view, (H, W)) -> (prob, weight)``.

    ``scale`` > 1 zooms in: the centred crop of ``round(H / scale) x round(W / scale)`` pixels (the
    model then sees the middle of the slice larger; the border is not covered, weight 0). ``scale`` < 1
    zooms out: the slice padded on each side with its minimum to ``H / scale x W / scale`` (a darker
    background, as around a head), whose middle maps back to the slice. 1 is the slice itself.
    """
    image = np.asarray(image)
    h, w = image.shape[:2]
    if scale > 1.0:
        ch, cw = max(1, round(h / scale)), max(1, round(w / scale))
        top, left = (h - ch) // 2, (w - cw) // 2
        view = image[top : top + ch, left : left + cw]

        def place(prob, shape):
            full, weight = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
            full[top : top + ch, left : left + cw] = prob
            weight[top : top + ch, left : left + cw] = 1.0
            return full, weight

        return view, place
    if scale < 1.0:
        ph, pw = round(h * (1.0 / scale - 1.0) / 2.0), round(w * (1.0 / scale - 1.0) / 2.0)
        pad = ((ph, ph), (pw, pw)) + ((0, 0),) * (image.ndim - 2)
        view = np.pad(image, pad, constant_values=image.min() if image.size else 0)

        def place(prob, shape):
            return prob[ph : ph + shape[0], pw : pw + shape[1]].astype(np.float32), np.ones(shape, np.float32)

        return view, place
    return image, lambda prob, shape: (prob.astype(np.float32), np.ones(shape, np.float32))


def combine_views(per_scale: Sequence[Sequence[tuple[np.ndarray, np.ndarray]]]) -> list[np.ndarray]:
    """Per image, the weighted mean of its views' ``(probability, weight)`` maps (``view_proba``)."""
    out = []
    for views in zip(*per_scale, strict=True):
        total = np.sum([p * wt for p, wt in views], axis=0)
        weight = np.sum([wt for _, wt in views], axis=0)
        out.append((total / np.maximum(weight, 1e-12)).astype(np.float32))
    return out


class _Masks:
    """Masks from probabilities: ``self.threshold`` and ``self.postprocess`` (``binarize``'s keywords)."""

    threshold: float
    postprocess: dict

    @property
    def keep_largest(self) -> bool:
        return self.postprocess["keep_largest"]

    @property
    def min_component_px(self) -> int:
        return self.postprocess["min_component_px"]

    def binarize(self, prob: np.ndarray) -> np.ndarray:
        return binarize(prob, self.threshold, **self.postprocess)

    def segment(
        self, images: Sequence[np.ndarray], *, tta: bool | None = None, scales: Sequence[float] | None = None
    ) -> list[np.ndarray]:
        """Bool masks at the original sizes, after this model's post-processing (``tta`` and ``scales``
        None: the model's own choices)."""
        return [self.binarize(p) for p in self.predict_proba(images, tta=tta, scales=scales)]


class Segmenter(_Masks):
    """A loaded segmenter with its metadata. Build with ``load_segmenter``."""

    def __init__(self, model, metadata: dict, path: Path | None = None):
        import tensorflow as tf  # noqa: PLC0415 (TensorFlow loads lazily: the web process imports ml.inference)

        self.model = model
        self.metadata = metadata
        self.path = path
        self.name = metadata.get("name", model.name)
        self.threshold = float(metadata.get("threshold", 0.5))
        self.postprocess = postprocess_options(metadata.get("postprocess"))  # binarize's clean-up keywords
        self.tta = bool(metadata.get("tta", False))
        self.tta_scales = check_scales(metadata.get("tta_scales", (1.0,)))
        self.input_size = int(model.input_shape[1])
        self._lock = threading.Lock()

        def forward(x):
            y = model(x, training=False)
            if isinstance(y, (list, tuple)):  # deep supervision: average the heads
                y = tf.add_n([tf.cast(t, tf.float32) for t in y]) / len(y)
            return tf.cast(y, tf.float32)

        spec = tf.TensorSpec((None, self.input_size, self.input_size, 1), tf.float32)
        self._forward = tf.function(forward, input_signature=[spec])
        self.runtime = "tensorflow"
        self._run = lambda x: self._forward(x).numpy()
        self._embed_model = None
        self._embed_function = None
        self._embed_run = None
        self._openvino_precision = None

    def use_openvino(self, precision: str) -> None:
        """Run the maps, and the embedding when first asked for, through OpenVINO (``openvino_forward``)."""
        self.runtime, self._openvino_precision = "openvino", precision
        self._run = openvino_forward(self._forward, precision, streams=True)

    # --- probabilities ---------------------------------------------------------------------------
    def forward(self, x: np.ndarray) -> np.ndarray:
        """The model's probabilities for a prepared batch, by its runtime (the caller holds ``_lock``)."""
        return self._run(x)

    def start_forward(self, x: np.ndarray):
        """``forward(x)`` started: returns a callable that gives its result. OpenVINO's runs while the caller
        starts other models' batches; TensorFlow's is done before this returns."""
        if isinstance(self._run, OpenVinoForward):
            return self._run.start(x)
        y = self._run(x)
        return lambda: y

    def prepare(self, images: Sequence[np.ndarray]) -> np.ndarray:
        import tensorflow as tf  # noqa: PLC0415 (TensorFlow loads lazily: the web process imports ml.inference)

        batch = np.zeros((len(images), self.input_size, self.input_size, 1), np.float32)
        for i, img in enumerate(images):
            x = normalise(img)[None, ..., None]
            batch[i] = tf.image.resize(x, (self.input_size, self.input_size), method="area").numpy()[0]
        return batch

    def predict_small(
        self, batch: np.ndarray, *, tta: bool | None = None, batch_size: int = 16, flip_only: bool = False
    ) -> np.ndarray:
        """Probabilities at the model's input size for a prepared ``(N, S, S, 1)`` batch.

        ``tta`` None uses the model's own choice (made on its validation split); True averages the
        prediction with that of the horizontally flipped slice. ``flip_only`` returns the flipped
        slice's prediction alone (mirrored back), so a caller can combine the two itself. With ``tta``
        the slices and their mirror images go through the model in one call (``2 * batch_size``).
        """
        tta = self.tta if tta is None else tta
        out = []
        with self._lock:
            for start in range(0, len(batch), batch_size):
                x = self._stack_small(batch[start : start + batch_size], tta, flip_only)
                out.append(self._finish_small(self.forward(x), tta, flip_only))
        return np.concatenate(out) if out else np.zeros((0, self.input_size, self.input_size, 1), np.float32)

    @staticmethod
    def _stack_small(x: np.ndarray, tta: bool, flip_only: bool) -> np.ndarray:
        """What one forward call sees: the slices, their mirror images after them (``tta``), or only the
        mirror images (``flip_only``)."""
        if flip_only:
            return x[:, :, ::-1].copy()
        return np.concatenate([x, x[:, :, ::-1]]) if tta else x

    @staticmethod
    def _finish_small(y: np.ndarray, tta: bool, flip_only: bool) -> np.ndarray:
        """The inverse of ``_stack_small`` on the model's output: mirror back, and average with ``tta``."""
        if flip_only:
            return y[:, :, ::-1]
        if not tta:
            return y
        n = len(y) // 2
        return (y[:n] + y[n:, :, ::-1]) / 2.0

    def view_proba(
        self,
        images: Sequence[np.ndarray],
        *,
        scale: float = 1.0,
        tta: bool | None = None,
        flip_only: bool = False,
        batch_size: int = 16,
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each slice seen at one zoom ``scale`` (see ``zoom_view``), mapped back to its own pixels:
        ``(probability, weight)`` per image, weight 1 where the view covers the slice and 0 elsewhere."""
        views = [zoom_view(img, scale) for img in images]
        small = self.predict_small(
            self.prepare([v for v, _ in views]), tta=tta, batch_size=batch_size, flip_only=flip_only
        )
        return [_placed(img, view, p) for img, view, p in zip(images, views, small, strict=True)]

    def predict_proba(
        self,
        images: Sequence[np.ndarray],
        *,
        tta: bool | None = None,
        scales: Sequence[float] | None = None,
        batch_size: int = 16,
    ) -> list[np.ndarray]:
        """Tumour probability maps, float32, each at its image's original ``(H, W)``.

        ``scales`` (default: the model's ``tta_scales``, chosen on its validation split) are zoom
        factors; the maps of all views are averaged where they cover the slice (``combine_views``). Every
        view of up to ``batch_size`` images (each zoom, and its mirror image with ``tta``) goes through
        the model in one call.
        """
        return predict_proba_together([self], images, tta=tta, scales=scales, batch_size=batch_size)[0]

    # --- embedding --------------------------------------------------------------------------------
    def _bottleneck_model(self):
        import keras  # noqa: PLC0415 (TensorFlow loads lazily: the web process imports ml.inference)

        if self._embed_model is None:
            names = {layer.name for layer in self.model.layers}
            if "bottleneck_relu2" in names:
                output = self.model.get_layer("bottleneck_relu2").output
            else:  # transfer-learning backbone: the nested extractor's last output is the bottleneck
                backbone = next(layer for layer in self.model.layers if layer.name.endswith("_backbone"))
                output = backbone.output[-1]
            self._embed_model = keras.Model(self.model.input, output)
        return self._embed_model

    def _embed_forward(self):
        """The bottleneck model as a ``tf.function`` (a graph call: a tenth of an eager Keras call's time)."""
        import tensorflow as tf  # noqa: PLC0415 (TensorFlow loads lazily: the web process imports ml.inference)

        if self._embed_function is None:
            embed_model = self._bottleneck_model()
            spec = tf.TensorSpec((None, self.input_size, self.input_size, 1), tf.float32)
            self._embed_function = tf.function(
                lambda x: tf.cast(embed_model(x, training=False), tf.float32), input_signature=[spec]
            )
        return self._embed_function

    def _embed_call(self, x: np.ndarray) -> np.ndarray:
        """The bottleneck feature maps of a prepared batch, by the segmenter's runtime (the caller holds
        ``_lock``)."""
        if self._embed_run is None:
            function = self._embed_forward()
            if self.runtime == "openvino":
                self._embed_run = openvino_forward(function, self._openvino_precision)
            else:
                self._embed_run = lambda batch: function(batch).numpy()
        return self._embed_run(x)

    def embed(self, image: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Bottleneck features pooled over the tumour region, then over the whole slice.

        Returns float32 ``(2C,)``: ``[mean over the (downsampled) mask, global mean]``. With no mask,
        or an empty one, both halves are the global mean.
        """
        import tensorflow as tf  # noqa: PLC0415 (TensorFlow loads lazily: the web process imports ml.inference)

        x = self.prepare([image])
        with self._lock:
            fmap = self._embed_call(x)[0]
        global_mean = fmap.mean(axis=(0, 1))
        if mask is None or not np.any(mask):
            return np.concatenate([global_mean, global_mean]).astype(np.float32)
        h, w = fmap.shape[:2]
        weights = tf.image.resize(
            np.asarray(mask, np.float32)[None, ..., None], (h, w), method="area"
        ).numpy()[0]
        if weights.sum() < 1e-6:
            return np.concatenate([global_mean, global_mean]).astype(np.float32)
        region = (fmap * weights).sum(axis=(0, 1)) / weights.sum()
        return np.concatenate([region, global_mean]).astype(np.float32)


def _placed(image: np.ndarray, zoomed, small: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A view's probabilities at the model's input size, resized to the view and placed on the slice:
    ``(probability, weight)`` (``zoomed`` is ``zoom_view``'s ``(view, place)``)."""
    import tensorflow as tf  # noqa: PLC0415 (TensorFlow loads lazily: the web process imports ml.inference)

    view, place = zoomed
    prob = tf.image.resize(small[None], view.shape[:2], method="bilinear").numpy()[0, ..., 0]
    return place(prob, np.asarray(image).shape[:2])


def predict_proba_together(
    segmenters: Sequence[Segmenter],
    images: Sequence[np.ndarray],
    *,
    tta: bool | None = None,
    scales: Sequence[float] | None = None,
    batch_size: int = 16,
) -> list[list[np.ndarray]]:
    """``segmenter.predict_proba(images)`` of each segmenter (a list per segmenter), in one graph call
    per group of images for all of them: each model gets every view of the group (its zooms, and their
    mirror images with flip TTA) as one batch, and the models run side by side in one ``tf.function``.

    ``tta`` and ``scales`` None: each model's own choices. Groups hold as many images as keep each model's
    batch within ``batch_size`` slices (at least one image). The result is the one each model gives alone:
    the same views, the same averaging (``Segmenter._finish_small``, ``combine_views``).
    """
    segmenters, images = list(segmenters), list(images)
    plans = []
    for seg in segmenters:
        seg_tta = seg.tta if tta is None else bool(tta)
        seg_scales = seg.tta_scales if scales is None else check_scales(scales)
        plans.append((seg, seg_tta, seg_scales))
    views_per_image = max(len(sc) * (2 if t else 1) for _, t, sc in plans) if plans else 1
    group_size = max(1, batch_size // views_per_image)
    out: list[list[np.ndarray]] = [[] for _ in segmenters]
    for start in range(0, len(images), group_size):
        group = images[start : start + group_size]
        prepared: dict[tuple, tuple[list, np.ndarray]] = {}  # models of one input size share their views
        batches = []
        for seg, seg_tta, seg_scales in plans:
            key = (seg.input_size, seg_scales)
            if key not in prepared:
                views = [[zoom_view(img, sc) for img in group] for sc in seg_scales]
                prepared[key] = (views, seg.prepare([v for per in views for v, _ in per]))
            batches.append(Segmenter._stack_small(prepared[key][1], seg_tta, False))
        outputs = _forward_together([seg for seg, _, _ in plans], batches)
        for i, ((seg, seg_tta, seg_scales), y) in enumerate(zip(plans, outputs, strict=True)):
            small = Segmenter._finish_small(y, seg_tta, False)
            views = prepared[(seg.input_size, seg_scales)][0]
            n = len(group)
            per_scale = [
                [
                    _placed(img, zoomed, small[k * n + j])
                    for j, (img, zoomed) in enumerate(zip(group, per, strict=True))
                ]
                for k, per in enumerate(views)
            ]
            out[i].extend(combine_views(per_scale))
    return out


def _forward_together(segmenters: list[Segmenter], batches: list[np.ndarray]) -> list[np.ndarray]:
    """Each segmenter's forward pass on its batch, holding every segmenter's lock: TensorFlow's all in
    one ``tf.function`` call (made once per set of segmenters, ``_GROUPS``), OpenVINO's all started and
    then collected, so that one model's last part overlaps the next model's first."""
    import tensorflow as tf  # noqa: PLC0415 (TensorFlow loads lazily: the web process imports ml.inference)

    with contextlib.ExitStack() as locks:
        for seg in sorted(set(segmenters), key=id):
            locks.enter_context(seg._lock)
        if len(segmenters) == 1 or any(s.runtime != "tensorflow" for s in segmenters):
            if len(set(segmenters)) < len(segmenters):  # a model twice: its requests take one batch at once
                return [s.forward(b) for s, b in zip(segmenters, batches, strict=True)]
            results = [s.start_forward(b) for s, b in zip(segmenters, batches, strict=True)]
            return [result() for result in results]
        key = tuple(segmenters)
        with _CACHE_LOCK:
            together = _GROUPS.get(key)
            if together is None:
                specs = [tf.TensorSpec((None, s.input_size, s.input_size, 1), tf.float32) for s in segmenters]
                forwards = [s._forward for s in segmenters]
                together = tf.function(
                    lambda *xs: [f(x) for f, x in zip(forwards, xs, strict=True)], input_signature=specs
                )
                _GROUPS[key] = together
        return [y.numpy() for y in together(*batches)]


def load_segmenter(
    keras_path: str | Path, *, precision: str | None = None, runtime: str = "tensorflow"
) -> Segmenter:
    """Load (once per process, precision and runtime) the bundle at ``keras_path``.

    ``precision`` None keeps the dtype policy the model was saved with; 'fp32' or 'bf16' rebuilds the
    graph under that policy from the metadata's spec and copies the weights. ``runtime`` 'openvino' runs
    the saved graph through OpenVINO (``openvino_forward``; its precision is float32 unless 'bf16');
    'auto' is ``resolve_runtime``'s choice. The embedding (``Segmenter.embed``) runs by the same runtime.
    """
    runtime = resolve_runtime(runtime)
    path = Path(keras_path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"No model file at {path}.")
    meta_path = path.with_suffix(".json")
    meta_time = meta_path.stat().st_mtime_ns if meta_path.is_file() else None
    key = (str(path), path.stat().st_mtime_ns, meta_time, precision, runtime)  # new JSON = reload
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = _load(path, precision, runtime)
        return _CACHE[key]


def _load(path: Path, precision: str | None, runtime: str) -> Segmenter:
    import keras  # noqa: PLC0415 (TensorFlow loads lazily: the web process imports ml.inference)

    import ml.losses  # noqa: F401, PLC0415 (registers the custom losses and metrics; Keras loads lazily)

    metadata = read_metadata(path)
    model = keras.models.load_model(path, compile=False)
    if runtime == "openvino":
        segmenter = Segmenter(model, metadata, path)
        segmenter.use_openvino(resolve_precision(precision or "fp32"))
        return segmenter
    if precision is not None:
        from ml.models import ModelSpec  # noqa: PLC0415 (TensorFlow loads lazily: the web process imports ml.inference)

        previous = keras.mixed_precision.global_policy().name
        set_precision(precision)
        try:
            rebuilt = ModelSpec.from_config(metadata["spec"]).build()
            rebuilt.set_weights(model.get_weights())
        finally:
            keras.mixed_precision.set_global_policy(previous)
        model = rebuilt
    return Segmenter(model, metadata, path)


def ensemble_proba(probs: Sequence[np.ndarray]) -> np.ndarray:
    """Average the members' probability maps (all at the same size)."""
    if not probs:
        raise ValueError("An ensemble needs at least one member's probabilities.")
    return np.mean(np.stack([np.asarray(p, np.float32) for p in probs]), axis=0)


def save_bundle(model, directory: str | Path, name: str, metadata: dict, *, rebuild=None) -> Path:
    """Write ``<name>.keras`` (weights and graph, no optimizer state) and ``<name>.json``.

    With a ``spec`` in the metadata (as ``ml.train`` writes) the file is float32 whatever precision
    trained it (the metadata records that): a bundle trained in mixed bf16 on one machine must not run
    in emulated bf16 on a machine without bf16 units. ``rebuild`` (a no-argument builder of the same
    graph) does the same for models that are not segmenters, such as the type classifier. Without
    either the graph is copied as it is. ``load_segmenter(..., precision="bf16")`` rebuilds it in bf16
    where that pays off.
    """
    import keras  # noqa: PLC0415 (TensorFlow loads lazily: the web process imports ml.inference)

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.keras"
    # A fresh, uncompiled float32 copy of the graph: no optimizer state in the shipped file.
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy("float32")
    try:
        if rebuild is not None:
            clean = rebuild()
        elif metadata.get("spec"):
            from ml.models import ModelSpec  # noqa: PLC0415 (TensorFlow loads lazily: the web process imports ml.inference)

            clean = ModelSpec.from_config(metadata["spec"]).build()
        else:
            clean = keras.Model.from_config(model.get_config())
        clean.set_weights(model.get_weights())
    finally:
        keras.mixed_precision.set_global_policy(previous)
    clean.save(path)
    meta = {"name": name, **metadata}
    (directory / f"{name}.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return path


def clear_cache() -> None:
    """Forget every loaded bundle (tests, or after a retrain replaced them all)."""
    with _CACHE_LOCK:
        _CACHE.clear()
        _GROUPS.clear()


@contextlib.contextmanager
def loaded_for_now():
    """Bundles first loaded inside the block leave the cache when it ends; those cached before stay.

    For models needed once, such as distillation teachers: a process that also serves keeps its
    segmenters loaded. A bundle another thread loads during the block is dropped too, and is simply
    loaded again when next asked for.
    """
    with _CACHE_LOCK:
        before = set(_CACHE)
    try:
        yield
    finally:
        with _CACHE_LOCK:
            for key in set(_CACHE) - before:
                dropped = _CACHE.pop(key)
                for group in [g for g in _GROUPS if dropped in g]:
                    del _GROUPS[group]


class Ensemble(_Masks):
    """Averages its members' probability maps (each at the image's own size).

    Its threshold and clean-up come from ``metadata`` (``ensemble.json``, chosen on the validation
    split by ``ml.calibrate``); without it, the mean of the members' thresholds, and keep-largest when
    most members use it. Each member applies its own flip-TTA choice.
    """

    def __init__(self, members: Sequence[Segmenter], name: str = "ensemble", metadata: dict | None = None):
        if not members:
            raise ValueError("An ensemble needs at least one member.")
        self.members = list(members)
        self.name = name
        meta = metadata or {}
        majority = lambda flags: sum(flags) * 2 > len(self.members)  # noqa: E731
        self.threshold = float(meta.get("threshold", np.mean([m.threshold for m in self.members])))
        self.postprocess = postprocess_options(
            {"keep_largest": majority([m.keep_largest for m in self.members]), **meta.get("postprocess", {})}
        )
        self.tta = meta.get("tta")  # None: each member uses its own choice

    def predict_proba(
        self,
        images: Sequence[np.ndarray],
        *,
        tta: bool | None = None,
        scales: Sequence[float] | None = None,
        batch_size: int = 16,
    ):
        tta = self.tta if tta is None else tta
        per_member = predict_proba_together(
            self.members, images, tta=tta, scales=scales, batch_size=batch_size
        )
        return [ensemble_proba(list(ps)) for ps in zip(*per_member, strict=True)]


def ensemble_calibration(directory: str | Path, member_names: Sequence[str]) -> dict | None:
    """``<directory>/ensemble.json`` (written by ``ml.calibrate``) when it was made for exactly these
    members; None when absent or calibrated for another set. Raises ``ValueError`` on invalid JSON."""
    path = Path(directory) / "ensemble.json"
    meta = json.loads(path.read_text()) if path.is_file() else None
    if meta and sorted(meta.get("members", [])) != sorted(member_names):
        return None
    return meta


def load_ensemble(directory: str | Path, members: Sequence[Segmenter]) -> Ensemble:
    """The ensemble of ``members`` with its calibration from ``<directory>/ensemble.json`` when present."""
    return Ensemble(members, metadata=ensemble_calibration(directory, [m.name for m in members]))


def shipped_bundles(directory: str | Path) -> list[Path]:
    """The ``.keras`` files in ``directory`` that have their ``.json`` beside them, by name."""
    directory = Path(directory)
    return sorted(p for p in directory.glob("*.keras") if p.with_suffix(".json").is_file())
