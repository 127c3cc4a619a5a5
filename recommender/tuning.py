"""Choosing the combined vector's block weights by cross-validation, away from the test patients.

``manage.py tune_retrieval`` describes every slice of the training + validation patients of
``ml.data.split_by_patient`` twice, as ``evaluate_retrieval`` would:

- as a base case: features and embedding from its ground-truth mask (``build_case_base`` does the same);
- as a query: features and embedding from the primary model's predicted mask (an upload's path).

It then runs k-fold cross-validation by patient group (``ml.data.kfold_by_patient``): for each fold
the scaler (standardisation, PCA, discriminants) is fitted on the other folds' base rows with the
candidate weights, and each query of the fold gets the kNN type vote (``ranking.knn_vote``) and the
similar-case ranking (``ranking.score`` over the same candidate pool as
``selectors.similar_for_query``: the 4k nearest, plus the 4k nearest of the voted type). Search here is
exact. The test patients are never read, so the weights can be chosen here and the test split
scored once afterwards with ``evaluate_retrieval``.

The primary model trained on most of these patients, so its masks of them are better than an upload's
would be, and the cross-validation flatters. ``describe_by_fold`` describes them as the folds see them
instead: each fold's queries are outlined and embedded by the fold bundle (``ml.train --fold K``) that
held that fold out, and the base's embeddings for that fold come from the same bundle (which trained on
the base cases, as the served model trained on the case base).

The describing pass (a segmentation and an embedding per slice) is the slow part; its result is cached
in an ``.npz`` keyed by the models' weights and the extractor version, so a grid can be widened cheaply.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ml.data import load_slices, read_records, split_ids_as_trained
from ml.inference import file_sha256, load_segmenter
from ml.region_choice import fold_maps
from ml.type_classification import load_type_classifier
from recommender import features as feature_extractor
from recommender import ranking
from recommender.evaluation import average_precision_at_k
from recommender.services import outline_from_probability
from segmentation.services import segment_image, segmenter


@dataclass
class Described:
    """Per slice: ids, types and groups; base (ground-truth mask) and query (predicted mask) vectors.

    A row whose ground-truth mask gave no features has ``base_ok`` False; a query with no outline has
    ``query_ok`` False (it counts as a wrong vote with AP 0, as in ``evaluate_retrieval``).
    """

    ids: list[str]
    types: list[str]
    groups: list[str]
    base_features: np.ndarray
    query_features: np.ndarray
    base_ok: np.ndarray
    query_ok: np.ndarray
    base_embeddings: dict[str, np.ndarray]
    query_embeddings: dict[str, np.ndarray]

    def save(self, path: Path, key: str) -> None:
        arrays = {
            "base_features": self.base_features,
            "query_features": self.query_features,
            "base_ok": self.base_ok,
            "query_ok": self.query_ok,
        }
        for name, emb in self.base_embeddings.items():
            arrays[f"base_emb::{name}"] = emb
            arrays[f"query_emb::{name}"] = self.query_embeddings[name]
        meta = json.dumps({"key": key, "ids": self.ids, "types": self.types, "groups": self.groups})
        np.savez_compressed(path, meta=np.array(meta), **arrays)

    @classmethod
    def load(cls, path: Path, key: str) -> Described | None:
        if not Path(path).is_file():
            return None
        with np.load(path) as z:
            meta = json.loads(str(z["meta"]))
            if meta["key"] != key:
                return None
            base_emb = {k.split("::", 1)[1]: z[k] for k in z.files if k.startswith("base_emb::")}
            query_emb = {k.split("::", 1)[1]: z[k] for k in z.files if k.startswith("query_emb::")}
            return cls(
                meta["ids"],
                meta["types"],
                meta["groups"],
                z["base_features"],
                z["query_features"],
                z["base_ok"],
                z["query_ok"],
                base_emb,
                query_emb,
            )


def cache_key(ids: list[str], primary_key: str, embedding_keys: list[str]) -> str:
    payload = json.dumps(
        [sorted(ids), primary_key, sorted(embedding_keys), feature_extractor.EXTRACTOR_VERSION]
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def describe_records(
    data_dir: Path,
    records: list,
    *,
    primary,
    embed_versions: list,
    progress: Callable[[int, int], None] | None = None,
) -> Described:
    """Describe each record from its ground-truth mask and from ``primary``'s predicted mask."""
    segmenters = {v.weights_key: segmenter(v) for v in embed_versions}

    def describe_one(record, image: np.ndarray, truth: np.ndarray):
        prob, mask = segment_image(primary, image)
        predicted = outline_from_probability(prob, mask)
        base = {key: seg.embed(image, truth) for key, seg in segmenters.items()}
        return predicted, base, {key: seg.embed(image, predicted) for key, seg in segmenters.items()}

    return _describe(data_dir, records, describe_one, progress)


def _describe(data_dir: Path, records: list, describe_one, progress) -> Described:
    """The describing pass: each record's image and ground-truth mask read once, the hand-made features of
    the ground truth (the base case) and of the outline ``describe_one(record, image, truth)`` returns
    (the query), with the base and query embeddings it returns by name."""
    n = len(records)
    dim = feature_extractor.N_FEATURES
    base_f, query_f = np.zeros((n, dim), np.float32), np.zeros((n, dim), np.float32)
    base_ok, query_ok = np.zeros(n, bool), np.zeros(n, bool)
    base_e: dict[str, list] = {}
    query_e: dict[str, list] = {}
    for i, r in enumerate(records):
        image = np.asarray(Image.open(Path(data_dir) / "images" / f"{r.id}.png").convert("L"))
        truth = np.asarray(Image.open(Path(data_dir) / "masks" / f"{r.id}.png").convert("L")) > 127
        predicted, base, query = describe_one(r, image, truth)
        for target, ok, m in ((base_f, base_ok, truth), (query_f, query_ok, predicted)):
            try:
                target[i] = feature_extractor.extract(image, m)
                ok[i] = True
            except feature_extractor.FeatureError:
                pass
        for into, embeddings in ((base_e, base), (query_e, query)):
            for key, e in embeddings.items():
                into.setdefault(key, []).append(e)
        if progress:
            progress(i + 1, n)
    return Described(
        [r.id for r in records],
        [r.tumour_type for r in records],
        [r.patient_group for r in records],
        base_f,
        query_f,
        base_ok,
        query_ok,
        {k: np.asarray(v, np.float32) for k, v in base_e.items()},
        {k: np.asarray(v, np.float32) for k, v in query_e.items()},
    )


def fold_bundles(data_dir: Path, folds: list[list[str]], bundles: list[Path]) -> tuple[list[Path], list[str]]:
    """Per fold, the segmenter bundle that held it out (``fold_holders``, from the bundles' JSON) and the
    name its embeddings are stored under: the bundle's ``name@hash12``."""
    metas = [json.loads(Path(p).with_suffix(".json").read_text()) for p in bundles]
    holders = fold_holders(data_dir, folds, [(Path(p).name, m) for p, m in zip(bundles, metas, strict=True)])
    paths = [Path(bundles[h]) for h in holders]
    return paths, [
        f"{metas[h].get('name', p.stem)}@{file_sha256(p)[:12]}" for h, p in zip(holders, paths, strict=True)
    ]


def describe_by_fold(
    data_dir: Path,
    records: list,
    folds: list[list[str]],
    bundles: list[Path],
    *,
    runtime: str = "auto",
    progress: Callable[[int, int], None] | None = None,
) -> Described:
    """Describe each record as ``describe_records`` does, as each fold sees it: a slice of fold ``n`` is a
    query outlined and embedded by the bundle that held fold ``n`` out, and every slice's base embedding
    for fold ``n`` comes from that bundle; fold ``n``'s embeddings are stored under the name
    ``fold_bundles`` gives it, to pass to ``cross_validate(embedding=...)``."""
    paths, keys = fold_bundles(data_dir, folds, bundles)
    loaded = {p: load_segmenter(p, runtime=runtime) for p in dict.fromkeys(paths)}
    by_fold = [loaded[p] for p in paths]
    fold_of = {identifier: n for n, fold in enumerate(folds) for identifier in fold}

    def describe_one(record, image: np.ndarray, truth: np.ndarray):
        own = fold_of[record.id]
        model = by_fold[own]
        prob = model.predict_proba([image])[0]
        predicted = outline_from_probability(prob, model.binarize(prob))
        query = model.embed(image, predicted)
        none = np.zeros_like(query)
        # A slice is a base case in every fold but its own, and a query only in its own.
        base = {key: none if n == own else by_fold[n].embed(image, truth) for n, key in enumerate(keys)}
        return predicted, base, {key: query if n == own else none for n, key in enumerate(keys)}

    return _describe(data_dir, records, describe_one, progress)


def fold_holders(data_dir: Path, folds: list[list[str]], bundles: list[tuple[str, dict]]) -> list[int]:
    """For each fold ``n``, the index in ``bundles`` (``(name, metadata)``) of the one trained with
    ``--fold n`` of ``len(folds)`` whose validation slices hold the whole fold. ``ValueError`` for a bundle
    not trained on a fold, or naming a fold that none held out."""
    records = read_records(data_dir)
    held_out = []
    for name, meta in bundles:
        split = meta.get("training", {}).get("split", {})
        if split.get("fold") is None:
            raise ValueError(f"{name} was not trained on a cross-validation fold (--fold K).")
        held_out.append(
            (split["fold"], split.get("folds", 5), set(split_ids_as_trained(records, split, "val")))
        )
    holders = []
    for n, fold in enumerate(folds):
        holder = next(
            (
                i
                for i, (trained, of, val) in enumerate(held_out)
                if (trained, of) == (n, len(folds)) and set(fold) <= val
            ),
            None,
        )
        if holder is None:
            raise ValueError(
                f"no bundle held out fold {n} ({len(fold)} slices): train one with --fold {n} and the same "
                "--folds and --seed"
            )
        holders.append(holder)
    return holders


def _fold_scores(
    d: Described,
    base_rows: np.ndarray,
    query_rows: np.ndarray,
    weights: dict,
    embedding: str | None,
    k: int,
    fitted: dict | None = None,
    fold: int = 0,
    balanced: bool = False,
) -> tuple[list[int], list[float], list[str], list[dict[str, float]]]:
    """Each query's vote (1 right, 0 wrong), AP@k, true type and kNN type distribution ({} without an
    outline)."""
    base_rows = base_rows[d.base_ok[base_rows]]
    types = np.asarray(d.types)
    # The fit (standardisation, PCA, discriminants) does not depend on the block weights, which only
    # scale the blocks in ``transform``: one fit per fold and embedding serves the whole grid.
    fit = fitted.get((fold, embedding)) if fitted is not None else None
    if fit is None:
        b_emb = d.base_embeddings[embedding][base_rows] if embedding else [None] * len(base_rows)
        fit = ranking.Scaler.fit(
            d.base_features[base_rows], list(b_emb) if embedding else None, list(types[base_rows])
        )
        if fitted is not None:
            fitted[(fold, embedding)] = fit
    scaler = dataclasses.replace(fit, weights=dict(weights))
    base = np.stack(
        [
            scaler.transform(d.base_features[i], d.base_embeddings[embedding][i] if embedding else None)
            for i in base_rows
        ]
    )
    base_types = list(types[base_rows])
    n_of_type = {t: base_types.count(t) for t in set(base_types)}
    prior = ranking.type_prior(base_types) if balanced else None
    correct, aps, query_types, distributions = [], [], [], []
    pool = max(4 * k, 40)
    for q in query_rows:
        query_types.append(types[q])
        if not d.query_ok[q]:
            correct.append(0)
            aps.append(0.0)
            distributions.append({})
            continue
        vec = scaler.transform(d.query_features[q], d.query_embeddings[embedding][q] if embedding else None)
        dist = np.linalg.norm(base - vec, axis=1)
        order = np.argsort(dist, kind="stable")
        distribution = ranking.knn_distribution(
            dist[order[:k]], [base_types[j] for j in order[:k]], k=k, prior=prior
        )
        distributions.append(distribution)
        voted, confidence = ranking.blend_votes(distribution, None, 0.0)
        correct.append(int(voted == types[q]))
        same = [j for j in order if base_types[j] == voted][:pool] if voted else []
        candidates = sorted(set(order[:pool].tolist()) | set(same))
        ranked = sorted(
            candidates, key=lambda j: (-ranking.score(dist[j], base_types[j], voted, confidence), dist[j], j)
        )[:k]
        aps.append(
            average_precision_at_k([base_types[j] == types[q] for j in ranked], k, n_of_type.get(types[q], 0))
        )
    return correct, aps, query_types, distributions


def cross_validate(
    d: Described,
    folds: list[list[str]],
    weights: dict,
    *,
    embedding: str | list[str] | None,
    k: int = 10,
    fitted: dict | None = None,
    balanced: bool = False,
    classifier: dict[str, dict[str, float]] | None = None,
    classifier_weights: list[float] | tuple[float, ...] = (),
) -> dict:
    """Type accuracy and mAP@k of ``weights`` over the folds (mean over queries, and per fold).

    ``embedding``: the name of the embeddings in ``d`` to use, or one name per fold (``describe_by_fold``).
    ``fitted``: a dict kept across calls on the same ``d`` and ``folds`` to reuse each fold's fit.
    ``balanced``: the kNN vote corrected by each type's share of the fold's base (``ranking.knn_vote``).
    ``classifier``: each slice's type probabilities from a classifier that never trained on its fold
    (``out_of_fold_classifier``); each of ``classifier_weights`` is then scored as the served suggestion
    blends them (``ranking.blend_votes``), under ``by_classifier_weight``.
    """
    position = {identifier: i for i, identifier in enumerate(d.ids)}
    everything = np.arange(len(d.ids))
    correct, aps, types, per_fold, fold_of, blended = [], [], [], [], [], {w: [] for w in classifier_weights}
    for n, fold in enumerate(folds):
        query_rows = np.array([position[i] for i in fold if i in position], dtype=int)
        base_rows = np.setdiff1d(everything, query_rows)
        used = embedding[n] if isinstance(embedding, list) else embedding
        c, a, t, dists = _fold_scores(d, base_rows, query_rows, weights, used, k, fitted, n, balanced)
        correct += c
        aps += a
        types += t
        fold_of += [n] * len(c)
        per_fold.append(round(float(np.mean(c)), 4) if c else 0.0)
        for w, hits in blended.items():
            for row, dist, truth in zip(query_rows, dists, t, strict=True):
                # A query with no outline gets no suggestion at all, as served.
                voted = ranking.blend_votes(dist, classifier.get(d.ids[row]), w)[0] if dist else None
                hits.append(int(voted == truth))
    result = {
        "weights": weights,
        "embedding_model": ", ".join(embedding) if isinstance(embedding, list) else embedding or "",
        "balanced_vote": balanced,
        "type_accuracy": round(float(np.mean(correct)), 4),
        "map": round(float(np.mean(aps)), 4),
        "type_accuracy_by_fold": per_fold,
        "type_accuracy_by_type": _by_type(correct, types),
        "n_queries": len(correct),
    }
    if blended:
        result["by_classifier_weight"] = {
            str(w): {
                "type_accuracy": round(float(np.mean(hits)), 4),
                "type_accuracy_by_type": _by_type(hits, types),
                "type_accuracy_by_fold": [
                    round(float(np.mean([h for h, f in zip(hits, fold_of, strict=True) if f == n])), 4)
                    for n in range(len(folds))
                ],
            }
            for w, hits in blended.items()
        }
    return result


def _by_type(hits: list[int], types: list[str]) -> dict[str, float]:
    return {
        t: round(float(np.mean([h for h, tt in zip(hits, types, strict=True) if tt == t])), 4)
        for t in sorted(set(types))
    }


def out_of_fold_classifier(
    data_dir: Path,
    folds: list[list[str]],
    bundles: list[Path],
    *,
    segmenters: list[Path] | None = None,
    maps_cache: Path | None = None,
    runtime: str = "auto",
) -> dict[str, dict[str, float]]:
    """Each slice of ``folds``, by id: its type probabilities from the classifier bundle that held its
    fold out (trained with ``--fold``; its validation slices hold the whole fold), so no slice is
    scored by a classifier that trained on it. ``ValueError`` naming a fold no bundle held out.

    A classifier that reads the tumour's outline (``--tumour-region``) is given the outline the query
    has in ``describe_by_fold``: that of the fold segmenter among ``segmenters`` that held the same fold
    out (its maps from ``ml.region_choice.fold_maps``, cached in ``maps_cache``). Without
    ``segmenters`` such a classifier is refused rather than typed without one."""
    classifiers = [load_type_classifier(path, runtime=runtime) for path in bundles]
    reads = [Path(p).name for p, c in zip(bundles, classifiers, strict=True) if c.takes_outline]
    if reads and not segmenters:
        raise ValueError(
            f"{', '.join(reads)} read the tumour's outline (--tumour-region): pass the fold segmenters "
            "that outline each fold's queries (--fold-models)."
        )
    holders = fold_holders(
        data_dir, folds, [(Path(p).name, c.metadata) for p, c in zip(bundles, classifiers, strict=True)]
    )
    outliners = fold_bundles(data_dir, folds, segmenters)[0] if reads else [None] * len(folds)
    out: dict[str, dict[str, float]] = {}
    for fold, holder, outliner in zip(folds, holders, outliners, strict=True):
        classifier = classifiers[holder]
        slices = load_slices(data_dir, fold)
        ids = [r.id for r in slices.records]
        outlines = _fold_outlines(data_dir, outliner, ids, maps_cache) if classifier.takes_outline else None
        for record, p in zip(slices.records, classifier.probabilities(slices.images, outlines), strict=True):
            out[record.id] = {t: float(v) for t, v in zip(classifier.classes, p, strict=True)}
    return out


def _fold_outlines(data_dir: Path, segmenter: Path, ids: list[str], cache: Path | None) -> list[np.ndarray]:
    """The outlines ``describe_by_fold`` gives the queries ``ids`` of one fold: the fold segmenter's mask,
    or the likeliest region of its map where that is empty."""
    model, slices, maps = fold_maps(data_dir, segmenter, cache)
    by_id = {r.id: m for r, m in zip(slices.records, maps, strict=True)}
    return [outline_from_probability(by_id[i], model.binarize(by_id[i])) for i in ids]


def grid(discriminant: list[float], features: list[float], embedding: list[float]) -> list[dict]:
    return [
        {"discriminant": wd, "features": wf, "embedding": we}
        for wd, wf, we in itertools.product(discriminant, features, embedding)
    ]
