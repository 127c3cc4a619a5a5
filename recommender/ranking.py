"""Vector scaling, the tumour-type vote and the similar-case ranking (numpy only, no Django).

Combined vector
    ``[w_d * d / sqrt(T), w_f * z / sqrt(F), w_e * e / sqrt(E)]`` where
    - ``z`` are the F hand-made features standardised on the case base (clipped to +-5 SD);
    - ``e`` the E first principal components of the learned embedding, whitened;
    - ``d`` the T = (number of types - 1) linear discriminants (Fisher LDA, within-class whitened) of
      ``[z, e]`` fitted on the base cases' tumour types: the directions that separate the types.
    Each block contributes about ``w^2`` to a squared distance, whatever its length. The weights
    (``DEFAULT_WEIGHTS``) were chosen by 5-fold patient-grouped cross-validation of the type vote on
    the training + validation patients of ml.data.split_by_patient (never the test patients).

Ranking of similar cases (documented contract of ``GET /api/cases/{id}/similar/``)
    ``score = TYPE_WEIGHT * type_agreement + (1 - TYPE_WEIGHT) * similarity`` with
    - ``similarity = 1 / (1 + d)``, ``d`` the Euclidean distance between combined vectors;
    - ``type_agreement`` = 1 when the candidate's type equals the query's type as entered by a
      clinician (or imported); the suggestion's confidence when the query's type is only predicted;
      0 when the types differ or the query has none.
    With ``TYPE_WEIGHT = 0.5``, a confirmed same-type case always ranks above a case of another type;
    among cases of the same standing, the nearer one ranks first. ``similarity`` is what the API shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

TYPE_WEIGHT = 0.5
DEFAULT_WEIGHTS = {"discriminant": 1.0, "features": 1.0, "embedding": 0.6}
DISCRIMINANT_DIM = 2  # three tumour types
_CLIP = 5.0


@dataclass
class Scaler:
    feature_mean: np.ndarray
    feature_std: np.ndarray
    embedding_mean: np.ndarray | None = None
    components: np.ndarray | None = None  # (E, D)
    component_scale: np.ndarray | None = None  # (E,)
    embedding_dim: int = 32
    weights: dict = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    discriminant_mean: np.ndarray | None = None  # (F + E,)
    discriminant: np.ndarray | None = None  # (F + E, T)

    @classmethod
    def fit(
        cls,
        features: np.ndarray,
        embeddings=None,
        labels=None,
        *,
        embedding_dim: int = 32,
        weights: dict | None = None,
    ) -> Scaler:
        """Fit on the base. ``embeddings`` and ``labels`` (tumour types) are aligned with the feature rows;
        a missing embedding is None, and labels enable the discriminant block."""
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or len(features) < 2:
            raise ValueError("fitting a scaler needs at least two cases")
        mean = features.mean(axis=0)
        std = features.std(axis=0)
        std[std < 1e-6] = 1.0
        scaler = cls(mean, std, embedding_dim=embedding_dim, weights=dict(weights or DEFAULT_WEIGHTS))
        rows = list(embeddings) if embeddings is not None else [None] * len(features)
        present = [e for e in rows if e is not None]
        if len(present) >= 2 and len({len(e) for e in present}) == 1:
            emb = np.asarray(present, dtype=np.float64)
            e_mean = emb.mean(axis=0)
            _, s, vt = np.linalg.svd(emb - e_mean, full_matrices=False)
            n = min(embedding_dim, vt.shape[0])
            scale = s[:n] / np.sqrt(max(len(emb) - 1, 1))
            scale[scale < 1e-6] = 1.0
            scaler.embedding_mean, scaler.components, scaler.component_scale = e_mean, vt[:n], scale
        if labels is not None:
            x = np.stack([np.concatenate(scaler._blocks(f, e)) for f, e in zip(features, rows, strict=True)])
            scaler.discriminant_mean, scaler.discriminant = _fisher_lda(
                x, np.asarray(labels), DISCRIMINANT_DIM
            )
        return scaler

    def _blocks(self, features, embedding) -> tuple[np.ndarray, np.ndarray]:
        z = np.clip(
            (np.asarray(features, dtype=np.float64) - self.feature_mean) / self.feature_std, -_CLIP, _CLIP
        )
        e = np.zeros(self.embedding_dim)
        if (
            self.components is not None
            and embedding is not None
            and len(embedding) == self.components.shape[1]
        ):
            proj = (np.asarray(embedding, dtype=np.float64) - self.embedding_mean) @ self.components.T
            e[: len(proj)] = np.clip(proj / self.component_scale, -_CLIP, _CLIP)
        return z, e

    def transform(self, features: np.ndarray, embedding: np.ndarray | None) -> np.ndarray:
        """One combined vector of length T + F + E (a block is zero when the scaler could not fit it)."""
        z, e = self._blocks(features, embedding)
        d = np.zeros(DISCRIMINANT_DIM)
        if self.discriminant is not None:
            proj = (np.concatenate([z, e]) - self.discriminant_mean) @ self.discriminant
            d[: len(proj)] = np.clip(proj, -3 * _CLIP, 3 * _CLIP)
        wd = self.weights.get("discriminant", 0.0)
        wf, we = self.weights.get("features", 1.0), self.weights.get("embedding", 0.0)
        return np.concatenate(
            [
                wd * d / np.sqrt(DISCRIMINANT_DIM),
                wf * z / np.sqrt(len(z)),
                we * e / np.sqrt(self.embedding_dim),
            ]
        ).astype(np.float32)

    def standardise(self, features: np.ndarray) -> np.ndarray:
        return self._blocks(features, None)[0]

    def to_params(self) -> dict:
        def listify(a):
            return None if a is None else np.asarray(a).tolist()

        return {
            "feature_mean": listify(self.feature_mean),
            "feature_std": listify(self.feature_std),
            "embedding_mean": listify(self.embedding_mean),
            "components": listify(self.components),
            "component_scale": listify(self.component_scale),
            "embedding_dim": self.embedding_dim,
            "weights": self.weights,
            "discriminant_mean": listify(self.discriminant_mean),
            "discriminant": listify(self.discriminant),
        }

    @classmethod
    def from_params(cls, params: dict) -> Scaler:
        def arr(key):
            return None if params.get(key) is None else np.asarray(params[key], dtype=np.float64)

        return cls(
            arr("feature_mean"),
            arr("feature_std"),
            arr("embedding_mean"),
            arr("components"),
            arr("component_scale"),
            int(params.get("embedding_dim", 32)),
            dict(params.get("weights") or DEFAULT_WEIGHTS),
            arr("discriminant_mean"),
            arr("discriminant"),
        )


def _fisher_lda(x: np.ndarray, labels: np.ndarray, n_components: int, reg: float = 1e-2):
    """(mean, projection): within-class whitening, then the top between-class directions."""
    keep = np.array([bool(label) for label in labels])
    x, labels = x[keep], labels[keep]
    classes = sorted(set(labels.tolist()))
    if len(classes) < 2:
        return None, None
    mean = x.mean(axis=0)
    dim = x.shape[1]
    sw, sb = np.zeros((dim, dim)), np.zeros((dim, dim))
    for c in classes:
        xc = x[labels == c]
        mc = xc.mean(axis=0)
        sw += (xc - mc).T @ (xc - mc)
        sb += len(xc) * np.outer(mc - mean, mc - mean)
    sw, sb = sw / len(x) + reg * np.eye(dim), sb / len(x)
    evals, evecs = np.linalg.eigh(sw)
    whiten = evecs @ np.diag(evals**-0.5) @ evecs.T
    b_evals, b_evecs = np.linalg.eigh(whiten @ sb @ whiten)
    order = np.argsort(-b_evals)[: min(n_components, len(classes) - 1)]
    return mean, whiten @ b_evecs[:, order]


def knn_distribution(
    distances: np.ndarray, types: list[str], *, k: int = 10, prior: dict[str, float] | None = None
) -> dict[str, float]:
    """Distance-weighted shares (summing to 1) of the types among the k nearest labelled cases.

    ``distances`` must be sorted ascending and aligned with ``types``; unlabelled neighbours are skipped.
    Each neighbour weighs ``1 / (d + 0.001)``. Empty when no neighbour has a type. With ``prior`` (each
    type's share of the case base, ``type_prior``), a neighbour's weight is divided by its type's share,
    so a type the base holds few of is not outvoted for being rare: the prior correction of Saerens,
    Latinne & Decaestecker, "Adjusting the outputs of a classifier to new a priori probabilities", Neural
    Computation 14(1), 2002, toward equal priors.
    """
    weights: dict[str, float] = {}
    used = 0
    for d, t in zip(distances, types, strict=True):
        if not t:
            continue
        share = prior.get(t) if prior else None
        weights[t] = weights.get(t, 0.0) + 1.0 / (float(d) + 1e-3) / (share if share else 1.0)
        used += 1
        if used == k:
            break
    total = sum(weights.values())
    return {t: w / total for t, w in weights.items()} if total else {}


def knn_vote(
    distances: np.ndarray, types: list[str], *, k: int = 10, prior: dict[str, float] | None = None
) -> tuple[str | None, float]:
    """Distance-weighted vote of the k nearest labelled cases: (type, share of the winning weight)."""
    return blend_votes(knn_distribution(distances, types, k=k, prior=prior), None, 0.0)


def type_prior(types: list[str]) -> dict[str, float]:
    """Each type's share of the labelled cases (unlabelled ones left out)."""
    labelled = [t for t in types if t]
    return {t: labelled.count(t) / len(labelled) for t in sorted(set(labelled))}


def blend_votes(
    knn: dict[str, float], classifier: dict[str, float] | None, classifier_weight: float
) -> tuple[str | None, float]:
    """The type suggestion: ``p = (1 - w) * knn + w * classifier`` per type; (arg max, its p).

    ``w`` is the classifier's share (``TUMORSITE_TYPE_CLASSIFIER_WEIGHT``, chosen on the validation
    split). With no classifier (None) or ``w`` = 0 it is the kNN vote; with no kNN vote (an empty base)
    it is the classifier's alone. Ties go to the alphabetically first type.
    """
    if not 0.0 <= classifier_weight <= 1.0:
        raise ValueError(f"the classifier weight must be in [0, 1], got {classifier_weight}")
    if not classifier or classifier_weight == 0.0:
        blended = dict(knn)
    elif not knn:
        blended = dict(classifier)
    else:
        blended = {
            t: (1.0 - classifier_weight) * knn.get(t, 0.0) + classifier_weight * classifier.get(t, 0.0)
            for t in set(knn) | set(classifier)
        }
    if not blended:
        return None, 0.0
    best = max(sorted(blended), key=blended.get)
    return best, float(blended[best])


def similarity(distance: float) -> float:
    return 1.0 / (1.0 + float(distance))


def score(
    distance: float, candidate_type: str | None, query_type: str | None, type_confidence: float
) -> float:
    agreement = type_confidence if (query_type and candidate_type == query_type) else 0.0
    return TYPE_WEIGHT * agreement + (1.0 - TYPE_WEIGHT) * similarity(distance)
