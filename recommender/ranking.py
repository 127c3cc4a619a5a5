"""Vector scaling, the tumour-type vote and the similar-case ranking (numpy only, no Django).

Combined vector
    ``[w_f * z / sqrt(F), w_e * e / sqrt(E)]`` where ``z`` are the F hand-made features standardised
    on the case base (clipped to +-5 SD) and ``e`` the E first principal components of the learned
    embedding, whitened. Each block then contributes about ``w^2`` to a squared distance, whatever
    its length.

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
DEFAULT_WEIGHTS = {"features": 1.0, "embedding": 0.6}
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

    @classmethod
    def fit(cls, features: np.ndarray, embeddings: np.ndarray | None, *, embedding_dim: int = 32,
            weights: dict | None = None) -> Scaler:
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or len(features) < 2:
            raise ValueError("fitting a scaler needs at least two cases")
        mean = features.mean(axis=0)
        std = features.std(axis=0)
        std[std < 1e-6] = 1.0
        scaler = cls(mean, std, embedding_dim=embedding_dim, weights=dict(weights or DEFAULT_WEIGHTS))
        if embeddings is not None and len(embeddings) >= 2:
            emb = np.asarray(embeddings, dtype=np.float64)
            e_mean = emb.mean(axis=0)
            _, s, vt = np.linalg.svd(emb - e_mean, full_matrices=False)
            n = min(embedding_dim, vt.shape[0])
            scale = s[:n] / np.sqrt(max(len(emb) - 1, 1))
            scale[scale < 1e-6] = 1.0
            scaler.embedding_mean, scaler.components, scaler.component_scale = e_mean, vt[:n], scale
        return scaler

    def transform(self, features: np.ndarray, embedding: np.ndarray | None) -> np.ndarray:
        """One combined vector of length F + embedding_dim (the embedding block is zero without PCA)."""
        z = np.clip((np.asarray(features, dtype=np.float64) - self.feature_mean) / self.feature_std, -_CLIP, _CLIP)
        e = np.zeros(self.embedding_dim)
        if self.components is not None and embedding is not None and len(embedding) == self.components.shape[1]:
            proj = (np.asarray(embedding, dtype=np.float64) - self.embedding_mean) @ self.components.T
            e[: len(proj)] = np.clip(proj / self.component_scale, -_CLIP, _CLIP)
        wf, we = self.weights.get("features", 1.0), self.weights.get("embedding", 0.0)
        return np.concatenate([wf * z / np.sqrt(len(z)), we * e / np.sqrt(self.embedding_dim)]).astype(np.float32)

    def standardise(self, features: np.ndarray) -> np.ndarray:
        return np.clip((np.asarray(features, dtype=np.float64) - self.feature_mean) / self.feature_std, -_CLIP, _CLIP)

    def to_params(self) -> dict:
        def listify(a):
            return None if a is None else np.asarray(a).tolist()

        return {
            "feature_mean": listify(self.feature_mean), "feature_std": listify(self.feature_std),
            "embedding_mean": listify(self.embedding_mean), "components": listify(self.components),
            "component_scale": listify(self.component_scale), "embedding_dim": self.embedding_dim,
            "weights": self.weights,
        }

    @classmethod
    def from_params(cls, params: dict) -> Scaler:
        def arr(key):
            return None if params.get(key) is None else np.asarray(params[key], dtype=np.float64)

        return cls(arr("feature_mean"), arr("feature_std"), arr("embedding_mean"), arr("components"),
                   arr("component_scale"), int(params.get("embedding_dim", 32)),
                   dict(params.get("weights") or DEFAULT_WEIGHTS))


def knn_vote(distances: np.ndarray, types: list[str], *, k: int = 10) -> tuple[str | None, float]:
    """Distance-weighted vote of the k nearest labelled cases: (type, share of the winning weight).

    ``distances`` must be sorted ascending and aligned with ``types``; unlabelled neighbours are skipped.
    """
    weights: dict[str, float] = {}
    used = 0
    for d, t in zip(distances, types):
        if not t:
            continue
        weights[t] = weights.get(t, 0.0) + 1.0 / (float(d) + 1e-3)
        used += 1
        if used == k:
            break
    if not weights:
        return None, 0.0
    best = max(sorted(weights), key=weights.get)
    return best, weights[best] / sum(weights.values())


def similarity(distance: float) -> float:
    return 1.0 / (1.0 + float(distance))


def score(distance: float, candidate_type: str | None, query_type: str | None, type_confidence: float) -> float:
    agreement = type_confidence if (query_type and candidate_type == query_type) else 0.0
    return TYPE_WEIGHT * agreement + (1.0 - TYPE_WEIGHT) * similarity(distance)
