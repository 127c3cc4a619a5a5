import numpy as np

from recommender import ranking


def test_scaler_round_trips_and_gives_fixed_length_vectors():
    rng = np.random.default_rng(0)
    feats, emb = rng.normal(size=(50, 5)), rng.normal(size=(50, 12))
    scaler = ranking.Scaler.fit(feats, emb, embedding_dim=8)
    again = ranking.Scaler.from_params(scaler.to_params())
    v = scaler.transform(feats[0], emb[0])
    assert v.shape == (13,)
    np.testing.assert_allclose(v, again.transform(feats[0], emb[0]), rtol=1e-6)
    # An embedding of the wrong width (another model) is left out, not mixed in.
    assert np.all(scaler.transform(feats[0], np.zeros(3))[5:] == 0)


def test_knn_vote_weights_by_distance_and_reports_a_share():
    ttype, confidence = ranking.knn_vote([0.1, 0.2, 1.0, 1.1, 1.2], ["glioma", "glioma", "pituitary", "pituitary",
                                                                      "pituitary"], k=5)
    assert ttype == "glioma" and 0.5 < confidence < 1.0
    assert ranking.knn_vote([], [], k=3) == (None, 0.0)


def test_a_confirmed_same_type_case_outranks_a_nearer_case_of_another_type():
    same = ranking.score(5.0, "glioma", "glioma", 1.0)
    other = ranking.score(0.0, "meningioma", "glioma", 1.0)
    assert same > other
    # Without a type, distance alone decides.
    assert ranking.score(0.1, "glioma", None, 0.0) > ranking.score(0.2, "glioma", None, 0.0)
