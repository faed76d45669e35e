"""Default ranking model: a blend of SVD++ with side features and three AutoRecs,
folded at export into one low-rank table model with the kit's two-string signature.

Training (all in TensorFlow, index space):
  1. "MF++": rating = mu + b_u + b_i + <p_u, q_i>, where
       p_u = P[u] + sum_k E_k[user feature k of u] + |N(u)|^-1/2 sum_{j in N(u)} Y[j]
             (features: age bucket, gender, occupation, zip first digit; N(u) the
             movies u rated in the training log: SVD++ implicit feedback),
       q_i = Q[i] + mean_g G[genre g of i] + Yr[release-year bucket of i],
       b_u, b_i likewise include per-feature biases.
     64-d, Adam 2e-3, batch 1024, L2 0.1 on the composed p_u and q_i of each example
     (per-example, so frequent ids are regularised more), L2 0.001 on the composed
     biases, early stopping on validation RMSE (patience 4 epochs, best weights kept).
  2. Two I-AutoRecs (item rating vectors over users -> 500 sigmoid units -> users),
     full-batch Adam 3e-3, L2 lambda=100 (on the sum-of-squares loss), input dropout
     0.2, loss on observed entries only, validation every 20 steps, patience 5.
  3. One U-AutoRec (same, with users and items swapped).
  4. Blend weights (+ intercept) by least squares on the validation predictions,
     shrunk towards equal weights (ridge 0.1 x validation rows).
Export:
  The blended prediction matrix F (movies x users; AutoRec codes recomputed from
  training + validation ratings, SVD++ implicit sets likewise) is double-centred
  (F = g + b_i + b_u + Z) and Z is truncated to rank `export_rank` by SVD. The
  device graph is: StaticHashTable(user) / StaticHashTable(title) -> gather from
  the tables -> g + b_u + b_i + <U_u, V_i> -> clip to [1, 5]. Unknown ids map to a
  zero row: an unknown user gets g + b_i (the movie's mean predicted rating over
  users), an unknown movie g + b_u, both unknown g.

Entry point: `train_blend(train_rows, validation_rows, config)`. Chosen on a
validation split carved from the training rows; the figures and what helped
are in the README ("The default model").
Rows are any objects with numpy arrays `.user_id`, `.movie_title` (str),
`.user_rating` (float) and, optionally, `.user_age`, `.user_gender`,
`.user_occupation`, `.user_zip_code`, `.movie_genres` ("|"-joined) as in
`train.data.Ratings`; side tables are built from the rows unless given.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from typing import Mapping, Optional, Sequence

import numpy as np

import train._tensorflow  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf
import tf_keras

from device_runtime.signature import ITEM_INPUT, OUTPUT, USER_INPUT
from train.config import TrainConfig
from train.data import MAX_RATING, MIN_RATING

LOGGER = logging.getLogger(__name__)

AGE_EDGES = (18, 25, 35, 45, 50, 56)  # MovieLens 1M's age groups
YEAR_PATTERN = re.compile(r"\((\d{4})\)\s*$")
OOV = 0  # row 0 of every id table is the unknown id


@dataclasses.dataclass(frozen=True)
class UserInfo:
    age: int
    gender: str
    occupation: str
    zip_code: str


@dataclasses.dataclass(frozen=True)
class MovieInfo:
    genres: tuple[str, ...]
    year: Optional[int]


# ----------------------------------------------------------------------------- tables


def side_tables_from_rows(*row_sets) -> tuple[dict[str, UserInfo], dict[str, MovieInfo]]:
    """Builds user and movie side tables from rating rows (first occurrence wins)."""
    users: dict[str, UserInfo] = {}
    movies: dict[str, MovieInfo] = {}
    for rows in row_sets:
        if rows is None:
            continue
        n = len(rows.user_rating)
        has_user = hasattr(rows, "user_age")
        has_genres = hasattr(rows, "movie_genres")
        for k in range(n):
            u, t = str(rows.user_id[k]), str(rows.movie_title[k])
            if u not in users:
                users[u] = (UserInfo(int(rows.user_age[k]), str(rows.user_gender[k]), str(rows.user_occupation[k]),
                                     str(rows.user_zip_code[k])) if has_user else UserInfo(-1, "", "", ""))
            if t not in movies:
                genres = tuple(g for g in str(rows.movie_genres[k]).split("|") if g) if has_genres else ()
                movies[t] = MovieInfo(genres, _year(t))
    return users, movies


def _year(title: str) -> Optional[int]:
    match = YEAR_PATTERN.search(title)
    return int(match.group(1)) if match else None


def _year_bucket(year: Optional[int]) -> int:
    if year is None:
        return 0
    if year < 1950:
        return 1
    if year < 1990:
        return 2 + (year - 1950) // 10  # 2..5 by decade
    return 6 + min(year - 1990, 8)  # 6..14 by year (most movies are 1990s)


YEAR_BUCKETS = 15


class _Index:
    """Vocabularies, side-feature index tables and rating-row encoders."""

    def __init__(self, users: Mapping[str, UserInfo], movies: Mapping[str, MovieInfo]):
        self.user_ids = sorted(users)
        self.titles = sorted(movies)
        self.user_index = {u: k + 1 for k, u in enumerate(self.user_ids)}
        self.title_index = {t: k + 1 for k, t in enumerate(self.titles)}
        self.n_users, self.n_items = len(self.user_ids) + 1, len(self.titles) + 1
        occupations = sorted({i.occupation for i in users.values() if i.occupation})
        self.user_card = [len(AGE_EDGES) + 2, 3, len(occupations) + 1, 12]
        self.user_features = np.zeros((self.n_users, 4), np.int32)  # 0 = unknown
        for u, info in users.items():
            zip_head = info.zip_code[:1]
            self.user_features[self.user_index[u]] = [
                0 if info.age < 0 else 1 + int(np.searchsorted(AGE_EDGES, info.age, side="right")),
                {"M": 1, "F": 2}.get(info.gender, 0),
                1 + occupations.index(info.occupation) if info.occupation else 0,
                (1 + int(zip_head)) if zip_head.isdigit() else (11 if zip_head else 0),
            ]
        genres = sorted({g for m in movies.values() for g in m.genres})
        self.genres = np.zeros((self.n_items, max(len(genres), 1)), np.float32)
        self.year = np.zeros((self.n_items,), np.int32)
        for t, info in movies.items():
            for g in info.genres:
                self.genres[self.title_index[t], genres.index(g)] = 1.0
            self.year[self.title_index[t]] = _year_bucket(info.year)
        self.genres /= np.maximum(self.genres.sum(1, keepdims=True), 1.0)

    def encode(self, rows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        u = np.array([self.user_index.get(str(x), OOV) for x in rows.user_id], np.int32)
        i = np.array([self.title_index.get(str(x), OOV) for x in rows.movie_title], np.int32)
        return u, i, np.asarray(rows.user_rating, np.float32)


# ----------------------------------------------------------------------------- models


def _rmse(pred: np.ndarray, target: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.clip(pred, MIN_RATING, MAX_RATING) - target) ** 2)))


def _implicit_matrix(index: _Index, u: np.ndarray, i: np.ndarray) -> np.ndarray:
    m = np.zeros((index.n_users, index.n_items), np.float32)
    m[u, i] = 1.0
    return m / np.sqrt(np.maximum(m.sum(1, keepdims=True), 1.0))


class _MFPlus(tf.Module):
    """Biased MF + SVD++ implicit feedback + side-feature embeddings and biases."""

    def __init__(self, index: _Index, config: TrainConfig, mean: float, implicit: np.ndarray, seed: int):
        super().__init__()
        d = config.embedding_dimension
        gen = tf.random.Generator.from_seed(seed)
        normal = lambda *shape: tf.Variable(gen.normal(shape, stddev=0.01))  # noqa: E731
        zeros = lambda *shape: tf.Variable(tf.zeros(shape))  # noqa: E731
        self.mu = tf.Variable(mean)
        self.bu, self.bi = zeros(index.n_users), zeros(index.n_items)
        self.P, self.Q, self.Y = normal(index.n_users, d), normal(index.n_items, d), normal(index.n_items, d)
        self.Eu = [normal(c, d) for c in index.user_card]
        self.Bu = [zeros(c) for c in index.user_card]
        self.Eg, self.Bg = normal(index.genres.shape[1], d), zeros(index.genres.shape[1])
        self.Ey, self.By = normal(YEAR_BUCKETS, d), zeros(YEAR_BUCKETS)
        self.user_features = tf.constant(index.user_features)
        self.genres, self.year = tf.constant(index.genres), tf.constant(index.year)
        self.implicit = tf.Variable(implicit, trainable=False)

    def tables(self):
        U, ub = self.P + self.implicit @ self.Y, tf.convert_to_tensor(self.bu)
        for k in range(len(self.Eu)):
            U += tf.gather(self.Eu[k], self.user_features[:, k])
            ub += tf.gather(self.Bu[k], self.user_features[:, k])
        I = self.Q + self.genres @ self.Eg + tf.gather(self.Ey, self.year)
        ib = self.bi + tf.linalg.matvec(self.genres, self.Bg) + tf.gather(self.By, self.year)
        return U, I, ub, ib


def _train_mf(index, config, train, valid, seed, epochs_max):
    u, i, r = train
    model = _MFPlus(index, config, float(r.mean()), _implicit_matrix(index, u, i), seed)
    opt = tf_keras.optimizers.Adam(config.learning_rate)
    variables = model.trainable_variables

    @tf.function
    def step(bu_, bi_, br):
        with tf.GradientTape() as tape:
            U, I, ub, ib = model.tables()
            pu, qi = tf.gather(U, bu_), tf.gather(I, bi_)
            bias_u, bias_i = tf.gather(ub, bu_), tf.gather(ib, bi_)
            pred = model.mu + bias_u + bias_i + tf.reduce_sum(pu * qi, 1)
            loss = (tf.reduce_mean(tf.square(pred - br))
                    + config.blend.mf_l2 * tf.reduce_mean(tf.reduce_sum(pu * pu, 1) + tf.reduce_sum(qi * qi, 1))
                    + config.blend.mf_bias_l2 * tf.reduce_mean(bias_u * bias_u + bias_i * bias_i))
        opt.apply_gradients(zip(tape.gradient(loss, variables), variables))

    @tf.function
    def predict(pu_, pi_):
        U, I, ub, ib = model.tables()
        return (model.mu + tf.gather(ub, pu_) + tf.gather(ib, pi_)
                + tf.reduce_sum(tf.gather(U, pu_) * tf.gather(I, pi_), 1))

    rng = np.random.default_rng(seed)
    best, best_epoch, best_weights = np.inf, -1, None
    for epoch in range(epochs_max):
        order = rng.permutation(len(r))
        for start in range(0, len(r), config.batch_size):
            b = order[start:start + config.batch_size]
            step(u[b], i[b], r[b])
        if valid is None:
            continue
        score = _rmse(predict(valid[0], valid[1]).numpy(), valid[2])
        LOGGER.info("matrix factorisation epoch %d/%d: validation RMSE %.4f", epoch + 1, epochs_max, score)
        if score < best - 1e-5:
            best, best_epoch, best_weights = score, epoch, [v.numpy() for v in variables]
        elif epoch - best_epoch >= config.early_stopping_patience:
            break
    if best_weights is not None:
        for v, w in zip(variables, best_weights):
            v.assign(w)

    def matrix(all_rows):  # movies x users, implicit sets from `all_rows`
        model.implicit.assign(_implicit_matrix(index, all_rows[0], all_rows[1]))
        U, I, ub, ib = [t.numpy() for t in model.tables()]
        return model.mu.numpy() + ub[None, :] + ib[:, None] + I @ U.T

    return matrix, dict(val_rmse=best, epochs=best_epoch + 1)


def _train_autorec(index, config, train, valid, seed, by_user: bool):
    """I-AutoRec (rows = movies) or, with by_user, U-AutoRec (rows = users)."""
    tf.random.set_seed(seed)
    u, i, r = train
    rows_n, cols_n = (index.n_users, index.n_items) if by_user else (index.n_items, index.n_users)
    row_of = (lambda a, b: a) if by_user else (lambda a, b: b)  # noqa: E731
    col_of = (lambda a, b: b) if by_user else (lambda a, b: a)  # noqa: E731

    def dense(data):
        m = np.zeros((rows_n, cols_n), np.float32)
        m[row_of(data[0], data[1]), col_of(data[0], data[1])] = data[2]
        return m

    R = tf.constant(dense(train))
    mask = tf.cast(R > 0, tf.float32)
    gen = tf.random.Generator.from_seed(seed)
    h, s = config.blend.autorec_hidden, config.blend.autorec_init_stddev
    We, be = tf.Variable(gen.normal((cols_n, h), stddev=s)), tf.Variable(tf.zeros(h))
    # Output biases start at 0, not at the mean rating: measured on validation, the mean
    # start reaches its best after ~50 steps at 0.905, the zero start after ~200 at 0.899.
    Wd, bd = tf.Variable(gen.normal((h, cols_n), stddev=s)), tf.Variable(tf.zeros(cols_n))
    variables = [We, be, Wd, bd]
    opt = tf_keras.optimizers.Adam(config.blend.autorec_learning_rate)

    def forward(x):
        return tf.sigmoid(x @ We + be) @ Wd + bd

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            out = forward(tf.nn.dropout(R, config.blend.autorec_dropout) if config.blend.autorec_dropout else R)
            loss = (tf.reduce_sum(tf.square((out - R) * mask))
                    + 0.5 * config.blend.autorec_l2 * (tf.reduce_sum(We * We) + tf.reduce_sum(Wd * Wd)))
        opt.apply_gradients(zip(tape.gradient(loss, variables), variables))

    reconstruct = tf.function(forward)
    best, best_step, best_weights = np.inf, 0, None
    for st in range(1, config.blend.autorec_steps_max + 1):
        step()
        if valid is None or st % config.blend.autorec_eval_every:
            continue
        out = reconstruct(R).numpy()
        score = _rmse(out[row_of(valid[0], valid[1]), col_of(valid[0], valid[1])], valid[2])
        LOGGER.debug("autorec step %d validation rmse %.4f", st, score)
        if score < best - 1e-5:
            best, best_step, best_weights = score, st, [v.numpy() for v in variables]
        elif st - best_step >= config.blend.autorec_patience * config.blend.autorec_eval_every:
            break
    if best_weights is not None:
        for v, w in zip(variables, best_weights):
            v.assign(w)

    def matrix(all_rows):  # movies x users, codes from `all_rows`
        out = reconstruct(tf.constant(dense(all_rows))).numpy()
        return out.T if by_user else out

    return matrix, dict(val_rmse=best, steps=best_step)


def _blend_weights(X: np.ndarray, y: np.ndarray, ridge: float) -> np.ndarray:
    """Least squares for the member weights (last column of X is the intercept),
    shrunk towards equal weights so that a small validation set cannot produce
    wild extrapolating weights: min |Xw - y|^2 + ridge * n * |w_members - 1/K|^2."""
    n, k = X.shape[0], X.shape[1] - 1
    penalty = np.diag([ridge * n] * k + [0.0])
    prior = np.array([1.0 / k] * k + [0.0])
    return np.linalg.solve(X.T @ X + penalty, X.T @ y + penalty @ prior)


# ----------------------------------------------------------------------------- export


class BlendModule(tf.Module):
    """The exported model: hash-table lookups, gathers, one dot product, clip."""

    def __init__(self, user_ids: Sequence[str], titles: Sequence[str], user_vectors, user_bias,
                 item_vectors, item_bias, global_mean: float):
        super().__init__()
        self.user_vectors = tf.constant(user_vectors, tf.float32)
        self.user_bias = tf.constant(user_bias, tf.float32)
        self.item_vectors = tf.constant(item_vectors, tf.float32)
        self.item_bias = tf.constant(item_bias, tf.float32)
        self.global_mean = tf.constant(global_mean, tf.float32)
        self.user_table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(list(user_ids)),
                                                tf.range(1, len(user_ids) + 1, dtype=tf.int64)), OOV)
        self.item_table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(list(titles)),
                                                tf.range(1, len(titles) + 1, dtype=tf.int64)), OOV)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=USER_INPUT),
                                  tf.TensorSpec([None], tf.string, name=ITEM_INPUT)])
    def serve(self, user_id, movie_title):
        u = self.user_table.lookup(user_id)
        i = self.item_table.lookup(movie_title)
        score = (self.global_mean + tf.gather(self.user_bias, u) + tf.gather(self.item_bias, i)
                 + tf.reduce_sum(tf.gather(self.user_vectors, u) * tf.gather(self.item_vectors, i), axis=1))
        # The reshape gives the output a static rank, so the .tflite signature says [-1].
        return {OUTPUT: tf.reshape(tf.clip_by_value(score, MIN_RATING, MAX_RATING), [-1])}


def _factorise(F: np.ndarray, rank: int):
    """F (movies x users, row/col 0 = unknown) -> g, b_i, b_u, V (movies x k), U (users x k)."""
    core = F[1:, 1:].astype(np.float64)
    g = core.mean()
    bi = core.mean(1) - g
    bu = core.mean(0) - g
    Z = core - g - bi[:, None] - bu[None, :]
    left, sv, right = np.linalg.svd(Z, full_matrices=False)
    root = np.sqrt(sv[:rank])
    V = np.zeros((F.shape[0], rank), np.float32)
    U = np.zeros((F.shape[1], rank), np.float32)
    V[1:] = left[:, :rank] * root
    U[1:] = right[:rank].T * root
    return (float(g), np.concatenate([[0.0], bi]).astype(np.float32),
            np.concatenate([[0.0], bu]).astype(np.float32), V, U)


# ----------------------------------------------------------------------------- entry


@dataclasses.dataclass(frozen=True)
class BlendResult:
    """The trained model and what the export folder needs.

    Attributes:
        module: `module.serve(user_id, movie_title)` -> {"rating": [N]}; export it
            with `train.model.export_saved_model`.
        users, movies: the exported vocabularies (row k+1 of the tables; 0 = unknown).
        metrics: validation figures, blend weights, member epochs/steps, wall time.
    """

    module: BlendModule
    users: tuple[str, ...]
    movies: tuple[str, ...]
    metrics: dict


def train_blend(
    train_rows,
    validation_rows,
    config: TrainConfig,
    users_table: Optional[Mapping[str, UserInfo]] = None,
    movies_table: Optional[Mapping[str, MovieInfo]] = None,
) -> BlendResult:
    """Trains the blend and folds it into the exportable low-rank module.

    Args:
        train_rows: rating rows to fit on (`train.data.Ratings`).
        validation_rows: held-out training rows for early stopping and the
            blend weights; None trains for the maximum epochs with equal weights.
        config: the preset; `config.blend` holds the blend's own settings, and
            embedding_dimension, learning_rate, batch_size, epochs and
            early_stopping_patience apply to its matrix-factorisation member.
        users_table, movies_table: side tables of every known user and movie
            (their keys form the vocabularies); built from the rows when None.

    Returns:
        The module to export, the vocabularies and the training figures.
    """
    seed = config.seed
    started = time.perf_counter()
    tf.random.set_seed(seed)
    row_users, row_movies = side_tables_from_rows(train_rows, validation_rows)
    users = dict(row_users, **(users_table or {}))
    movies = dict(row_movies, **(movies_table or {}))
    index = _Index(users, movies)
    train = index.encode(train_rows)
    valid = index.encode(validation_rows) if validation_rows is not None and len(validation_rows.user_rating) else None
    everything = train if valid is None else tuple(np.concatenate([a, b]) for a, b in zip(train, valid))

    members, metrics = [], {}
    mf_matrix, metrics["mf"] = _train_mf(index, config, train, valid, seed, config.epochs)
    members.append(mf_matrix)
    for k in range(config.blend.item_autorecs):
        fn, metrics[f"item_autorec_{k}"] = _train_autorec(index, config, train, valid, seed * 100 + k + 1, False)
        LOGGER.info("item AutoRec %d: validation RMSE %.4f after %d steps", k + 1, metrics[f"item_autorec_{k}"]["val_rmse"], metrics[f"item_autorec_{k}"]["steps"])
        members.append(fn)
    for k in range(config.blend.user_autorecs):
        fn, metrics[f"user_autorec_{k}"] = _train_autorec(index, config, train, valid, seed * 100 + 50 + k, True)
        LOGGER.info("user AutoRec %d: validation RMSE %.4f after %d steps", k + 1, metrics[f"user_autorec_{k}"]["val_rmse"], metrics[f"user_autorec_{k}"]["steps"])
        members.append(fn)

    if valid is not None:
        train_only = [fn(train) for fn in members]  # what the members saw while validating
        X = np.stack([m[valid[1], valid[0]] for m in train_only] + [np.ones(len(valid[2]))], 1)
        weights = _blend_weights(X, valid[2], config.blend.blend_ridge)
        metrics["blend_val_rmse"] = _rmse(X @ weights, valid[2])
        F72 = sum(w * m for w, m in zip(weights, train_only)) + weights[-1]
        g, bi, bu, V, U = _factorise(F72, config.blend.export_rank)
        low = g + bu[valid[0]] + bi[valid[1]] + np.sum(U[valid[0]] * V[valid[1]], 1)
        metrics["exported_form_val_rmse"] = _rmse(low, valid[2])
    else:
        weights = np.array([1.0 / len(members)] * len(members) + [0.0])
    metrics["blend_weights"] = [round(float(w), 4) for w in weights]

    F = sum(w * fn(everything) for w, fn in zip(weights, members)) + weights[-1]
    g, bi, bu, V, U = _factorise(F, config.blend.export_rank)
    module = BlendModule(index.user_ids, index.titles, U, bu, V, bi, g)
    metrics["train_seconds"] = round(time.perf_counter() - started, 1)
    metrics["vocabulary"] = dict(users=len(index.user_ids), movies=len(index.titles))
    metrics = {k: (round(v, 5) if isinstance(v, float) else v) for k, v in metrics.items()}
    LOGGER.info(
        "blend: validation RMSE %.4f (exported rank-%d form %.4f), weights %s, %.0f s",
        metrics.get("blend_val_rmse", float("nan")),
        config.blend.export_rank,
        metrics.get("exported_form_val_rmse", float("nan")),
        metrics["blend_weights"],
        metrics["train_seconds"],
    )
    return BlendResult(module, tuple(index.user_ids), tuple(index.titles), metrics)
