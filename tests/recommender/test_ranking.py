import numpy as np
import pytest

from recommender import ranking


def test_scaler_round_trips_and_gives_fixed_length_vectors():
    rng = np.random.default_rng(0)
    feats, emb = rng.normal(size=(50, 5)), rng.normal(size=(50, 12))
    labels = ["glioma", "meningioma", "pituitary"] * 16 + ["glioma", "glioma"]
    scaler = ranking.Scaler.fit(feats, emb, labels, embedding_dim=8)
    again = ranking.Scaler.from_params(scaler.to_params())
    v = scaler.transform(feats[0], emb[0])
    assert v.shape == (ranking.DISCRIMINANT_DIM + 5 + 8,)
    np.testing.assert_allclose(v, again.transform(feats[0], emb[0]), rtol=1e-5)
    # An embedding of the wrong width (another model) is left out, not mixed in.
    assert np.all(scaler.transform(feats[0], np.zeros(3))[-8:] == 0)


def test_the_discriminants_separate_the_types():
    rng = np.random.default_rng(1)
    labels = np.array(["glioma", "meningioma", "pituitary"] * 40)
    centres = {"glioma": 0.0, "meningioma": 1.0, "pituitary": -1.0}
    feats = rng.normal(size=(120, 6))
    feats[:, 0] += 3 * np.array([centres[t] for t in labels])  # one informative feature among noise
    scaler = ranking.Scaler.fit(feats, None, labels, weights={"discriminant": 1.0, "features": 0.0})
    d = np.stack([scaler.transform(f, None)[: ranking.DISCRIMINANT_DIM] for f in feats])
    means = {t: d[labels == t].mean(axis=0) for t in centres}
    spread = np.mean([d[labels == t].std(axis=0).mean() for t in centres])
    assert min(np.linalg.norm(means[a] - means[b]) for a in centres for b in centres if a < b) > 3 * spread


def test_knn_vote_weights_by_distance_and_reports_a_share():
    ttype, confidence = ranking.knn_vote(
        [0.1, 0.2, 1.0, 1.1, 1.2], ["glioma", "glioma", "pituitary", "pituitary", "pituitary"], k=5
    )
    assert ttype == "glioma" and 0.5 < confidence < 1.0
    assert ranking.knn_vote([], [], k=3) == (None, 0.0)


def test_the_knn_shares_are_distance_weighted_and_sum_to_one():
    shares = ranking.knn_distribution([0.0, 1.0, 3.0], ["glioma", None, "pituitary"], k=2)
    # The unlabelled neighbour is skipped; weights 1/0.001 and 1/3.001.
    total = 1 / 0.001 + 1 / 3.001
    assert shares == {
        "glioma": pytest.approx((1 / 0.001) / total),
        "pituitary": pytest.approx((1 / 3.001) / total),
    }
    assert ranking.knn_distribution([], [], k=3) == {}


def test_a_prior_corrected_vote_does_not_outvote_a_rare_type_for_being_rare():
    # Three glioma and two meningioma neighbours at the same distance: glioma wins as served, but the base
    # holds three times as many gliomas, so corrected by the shares meningioma does (2/0.25 > 3/0.75).
    distances, types = [1.0] * 5, ["glioma", "meningioma", "glioma", "meningioma", "glioma"]
    prior = ranking.type_prior(["glioma"] * 6 + ["meningioma"] * 2 + [None])
    assert prior == {"glioma": 0.75, "meningioma": 0.25}
    assert ranking.knn_vote(distances, types, k=5)[0] == "glioma"
    voted, confidence = ranking.knn_vote(distances, types, k=5, prior=prior)
    assert voted == "meningioma" and confidence == pytest.approx((2 / 0.25) / (2 / 0.25 + 3 / 0.75))
    shares = ranking.knn_distribution(distances, types, k=5, prior=prior)
    assert sum(shares.values()) == pytest.approx(1.0)
    # Equal shares change nothing.
    even = {"glioma": 0.5, "meningioma": 0.5}
    assert ranking.knn_distribution(distances, types, k=5, prior=even) == pytest.approx(
        ranking.knn_distribution(distances, types, k=5)
    )


def test_the_classifier_is_blended_in_by_its_weight():
    knn = {"glioma": 0.6, "meningioma": 0.4}
    classifier = {"glioma": 0.1, "meningioma": 0.7, "pituitary": 0.2}
    assert ranking.blend_votes(knn, classifier, 0.0) == ("glioma", 0.6)
    # 0.5: glioma 0.35, meningioma 0.55, pituitary 0.1.
    ttype, confidence = ranking.blend_votes(knn, classifier, 0.5)
    assert ttype == "meningioma" and confidence == pytest.approx(0.55)
    assert ranking.blend_votes(knn, classifier, 1.0) == ("meningioma", pytest.approx(0.7))
    assert ranking.blend_votes(knn, None, 0.5) == ("glioma", 0.6)  # no classifier: the kNN vote
    assert ranking.blend_votes({}, classifier, 0.25) == (
        "meningioma",
        pytest.approx(0.7),
    )  # no base: the classifier
    assert ranking.blend_votes({}, None, 0.5) == (None, 0.0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ranking.blend_votes(knn, classifier, 1.5)


def test_a_confirmed_same_type_case_outranks_a_nearer_case_of_another_type():
    same = ranking.score(5.0, "glioma", "glioma", 1.0)
    other = ranking.score(0.0, "meningioma", "glioma", 1.0)
    assert same > other
    # Without a type, distance alone decides.
    assert ranking.score(0.1, "glioma", None, 0.0) > ranking.score(0.2, "glioma", None, 0.0)
