"""The anomaly threshold comes from good images only, at the stated false-reject target."""

from __future__ import annotations

import numpy as np
import pytest

from edge.anomaly.threshold import outliers, threshold_for, threshold_without_outliers


def test_with_many_good_images_the_threshold_rejects_about_the_target_not_nothing():
    rng = np.random.default_rng(3)
    held_out = np.exp(rng.normal(3.0, 0.1, 200))  # scores of 200 good images, held out
    t = threshold_for(held_out, 0.01)
    assert t < held_out.max()  # not the highest good score: that rule rejects ~nothing
    unseen_good = np.exp(rng.normal(3.0, 0.1, 100_000))
    assert 0.005 < (unseen_good > t).mean() < 0.02


def test_with_few_good_images_the_threshold_is_never_below_their_own_quantile():
    s = np.array([10.0, 10.1, 10.2, 10.3, 10.4, 10.5, 10.6, 10.7, 10.8, 30.0])
    assert threshold_for(s, 0.05) >= np.quantile(s, 0.95)


def test_a_good_set_with_a_defect_in_it_is_named():
    s = np.array([10.0, 10.2, 9.9, 10.1, 10.3, 9.8, 10.0, 25.0, 10.1, 10.2])
    assert outliers(s) == [7]
    assert outliers(s[:7]) == []


def test_nonsense_targets_and_too_few_scores_are_refused():
    with pytest.raises(ValueError, match="at least 3"):
        threshold_for(np.array([1.0, 2.0]), 0.01)
    with pytest.raises(ValueError, match="false-reject rate"):
        threshold_for(np.array([1.0, 2.0, 3.0]), 0.9)


def test_a_far_out_good_image_is_named_and_does_not_set_the_threshold():
    rng = np.random.default_rng(5)
    held_out = np.exp(rng.normal(4.25, 0.02, 150))
    dirty = held_out.copy()
    dirty[[7, 90]] = np.exp(4.25 + 0.15)  # two "good" photos with dirt beside the product
    t_clean = threshold_for(held_out, 0.01)
    t, far = threshold_without_outliers(dirty, 0.01)
    assert far == [7, 90]
    assert t < np.exp(4.25 + 0.15) and abs(t - t_clean) / t_clean < 0.02
    assert threshold_for(dirty, 0.01) > t  # kept in, they would have set it


def test_with_few_good_images_the_target_holds_on_average_over_teach_sets():
    """Mean and spread estimated from 12 scores: the plain normal quantile would reject
    about twice the target on average; the prediction for the next unit holds it."""
    from statistics import NormalDist

    rng = np.random.default_rng(7)
    mu, sigma, frr = 4.0, 0.05, []
    for _ in range(2000):
        t = threshold_for(np.exp(rng.normal(mu, sigma, 12)), 0.01)
        frr.append(1.0 - NormalDist(mu, sigma).cdf(np.log(t)))
    assert 0.005 < np.mean(frr) <= 0.011, np.mean(frr)
