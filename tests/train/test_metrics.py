"""NDCG@k on hand-computed examples."""

import math

import numpy as np
import pytest

from train.metrics import ndcg_at_k


def test_perfect_order_scores_one_and_single_ratings_are_ignored():
    users = np.array(["a", "a", "a", "b"])
    ratings = np.array([5.0, 3.0, 1.0, 4.0])
    scores = np.array([0.9, 0.5, 0.1, 0.3])
    assert ndcg_at_k(users, ratings, scores) == pytest.approx(1.0)


def test_reversed_order_by_hand():
    users = np.array(["a", "a"])
    ratings = np.array([5.0, 1.0])
    scores = np.array([0.1, 0.9])  # the 1-star movie first
    dcg = (2**1 - 1) / math.log2(2) + (2**5 - 1) / math.log2(3)
    idcg = (2**5 - 1) / math.log2(2) + (2**1 - 1) / math.log2(3)
    assert ndcg_at_k(users, ratings, scores) == pytest.approx(dcg / idcg)


def test_users_are_weighted_equally_and_k_cuts_the_list():
    users = np.array(["a", "a", "b", "b", "b"])
    ratings = np.array([4.0, 2.0, 5.0, 4.0, 3.0])
    scores = np.array([1.0, 0.0, 0.0, 0.5, 1.0])  # a: right; b: reversed
    b_dcg = (2**3 - 1) / math.log2(2)  # k = 1: only the top movie counts
    b_idcg = (2**5 - 1) / math.log2(2)
    assert ndcg_at_k(users, ratings, scores, k=1) == pytest.approx((1.0 + b_dcg / b_idcg) / 2)
