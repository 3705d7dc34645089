"""TreeSHAP tables against xgboost's own margin and ``pred_contribs``, and against shap."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xgboost as xgb

from models.treeshap import MAX_INTERNAL_NODES, TreeShapTables

N_FEATURES = 8
UNUSED = (6, 7)  # constant columns: no tree can split on them
TOLERANCE = 1e-5


def _features(n: int, seed: int) -> np.ndarray:
    """Rows of shape (n, N_FEATURES): a quarter missing in columns 0-2, a coarse column,
    the constant columns ``UNUSED``."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_FEATURES))
    X[:, 3] = rng.integers(0, 4, size=n)  # ties: rows exactly at a split condition
    X[:, list(UNUSED)] = 1.0
    X[:, :3][rng.random((n, 3)) < 0.25] = np.nan
    return X


def _labels(X: np.ndarray, objective: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    filled = np.nan_to_num(X, nan=-0.5)  # missingness carries signal, so both default directions occur
    score = filled[:, 0] + filled[:, 1] * filled[:, 2] + 0.5 * filled[:, 3] - filled[:, 4] ** 2
    if objective == "binary:logistic":
        return (score + rng.normal(size=len(X)) > 0).astype(float)
    if objective == "survival:cox":
        times = rng.exponential(np.exp(-score))
        censored = rng.random(len(X)) < 0.3
        return np.where(censored, -times, times)  # xgboost: negative time = censored
    return score + rng.normal(size=len(X))


@pytest.fixture(scope="module")
def train_rows():
    return _features(600, seed=1)


@pytest.fixture(scope="module")
def test_rows():
    return _features(300, seed=2)


def _train(X, objective: str, max_depth: int, rounds: int, **params) -> xgb.Booster:
    train = xgb.DMatrix(X, label=_labels(X, objective, seed=3), missing=np.nan)
    return xgb.train({"objective": objective, "max_depth": max_depth, "eta": 0.3,
                      "nthread": 1, "seed": 0, **params}, train, num_boost_round=rounds)


def _xgboost_margin(booster, X):
    return booster.predict(xgb.DMatrix(X, missing=np.nan), output_margin=True)


def _xgboost_contributions(booster, X):
    return booster.predict(xgb.DMatrix(X, missing=np.nan), pred_contribs=True)


@pytest.mark.parametrize("rounds", [1, 150])
@pytest.mark.parametrize("max_depth", [1, 2, 3])
@pytest.mark.parametrize("objective", ["binary:logistic", "survival:cox"])
def test_equals_xgboost(train_rows, test_rows, objective, max_depth, rounds):
    booster = _train(train_rows, objective, max_depth, rounds)
    tables = TreeShapTables.from_booster(booster, N_FEATURES)
    assert tables.fallback_reason is None
    assert tables.n_trees == rounds

    contributions = tables.contributions(test_rows)
    assert contributions.shape == (len(test_rows), N_FEATURES + 1)
    np.testing.assert_allclose(contributions, _xgboost_contributions(booster, test_rows),
                               rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(tables.margin(test_rows), _xgboost_margin(booster, test_rows),
                               rtol=0, atol=TOLERANCE)
    assert np.all(contributions[:, list(UNUSED)] == 0.0)


def test_model_exercises_missing_directions_and_ties(train_rows, test_rows):
    """The data above makes trees whose missing values go both ways and rows that fall exactly
    on a split condition, so the equality tests cover both."""
    tables = TreeShapTables.from_booster(_train(train_rows, "binary:logistic", 3, 150), N_FEATURES)
    state = tables.to_state()
    used = state["slot_thresholds"] > -np.inf
    defaults = state["slot_default_left"][used]
    assert defaults.any() and not defaults.all()
    on_condition = np.isin(test_rows[:, 3].astype(np.float32),
                           state["slot_thresholds"][used & (state["slot_features"] == 3)])
    assert on_condition.any()
    assert not np.isin(state["slot_features"][used], UNUSED).any()


def test_values_are_compared_as_float32(train_rows):
    """A float64 value just below a split condition is that condition in float32: right, as in
    xgboost; the next float32 below goes left."""
    booster = _train(train_rows, "binary:logistic", 3, 30)
    tables = TreeShapTables.from_booster(booster, N_FEATURES)
    state = tables.to_state()
    used = state["slot_thresholds"] > -np.inf
    conditions = state["slot_thresholds"][used].astype(np.float64)
    features = state["slot_features"][used]
    rows = np.zeros((3 * len(conditions), N_FEATURES))
    for k, (feature, condition) in enumerate(zip(features, conditions, strict=True)):
        below = np.nextafter(np.float32(condition), np.float32(-np.inf))
        # The condition itself, a float64 just below it (the condition again in float32), and
        # the float32 just below it.
        for offset, value in enumerate((condition, condition - abs(condition) * 1e-12 - 1e-300, below)):
            rows[3 * k + offset, feature] = value
    assert np.any((rows < rows.astype(np.float32)) & (rows.astype(np.float32) == conditions.repeat(3)[:, None]))
    np.testing.assert_allclose(tables.contributions(rows), _xgboost_contributions(booster, rows),
                               rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(tables.margin(rows), _xgboost_margin(booster, rows),
                               rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("objective, base_score", [
    ("binary:logistic", 0.2), ("survival:cox", 3.0), ("reg:squarederror", -4.0),
    ("reg:squarederror", None),
])
def test_any_base_score(train_rows, test_rows, objective, base_score):
    params = {} if base_score is None else {"base_score": base_score}
    booster = _train(train_rows, objective, 2, 40, **params)
    tables = TreeShapTables.from_booster(booster, N_FEATURES)
    np.testing.assert_allclose(tables.margin(test_rows), _xgboost_margin(booster, test_rows),
                               rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(tables.contributions(test_rows),
                               _xgboost_contributions(booster, test_rows), rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("objective", ["binary:logistic", "survival:cox"])
def test_equals_shap_tree_explainer(train_rows, test_rows, objective):
    shap = pytest.importorskip("shap")
    booster = _train(train_rows, objective, 3, 60)
    tables = TreeShapTables.from_booster(booster, N_FEATURES)
    explainer = shap.TreeExplainer(booster)
    contributions = tables.contributions(test_rows)
    np.testing.assert_allclose(contributions[:, :-1], explainer.shap_values(test_rows),
                               rtol=0, atol=TOLERANCE)
    assert tables.expected_value == pytest.approx(float(explainer.expected_value), abs=TOLERANCE)


@pytest.mark.parametrize("max_depth", [1, 3])
def test_bias_plus_contributions_is_the_margin(train_rows, test_rows, max_depth):
    tables = TreeShapTables.from_booster(_train(train_rows, "survival:cox", max_depth, 150), N_FEATURES)
    contributions = tables.contributions(test_rows)
    assert contributions.dtype == np.float64
    np.testing.assert_array_equal(contributions[:, -1], tables.expected_value)
    np.testing.assert_allclose(contributions.sum(axis=1), tables.margin(test_rows), rtol=0, atol=1e-9)


def test_deep_trees_fall_back_to_pred_contribs(train_rows, test_rows):
    booster = _train(train_rows, "binary:logistic", 5, 20)
    tables = TreeShapTables.from_booster(booster, N_FEATURES)
    assert tables.fallback_reason is not None and "internal nodes" in tables.fallback_reason
    assert tables.n_trees == 0
    np.testing.assert_allclose(tables.contributions(test_rows),
                               _xgboost_contributions(booster, test_rows), rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(tables.margin(test_rows), _xgboost_margin(booster, test_rows),
                               rtol=0, atol=TOLERANCE)

    state = json.loads(json.dumps(tables.to_state()))
    with pytest.raises(ValueError, match="needs the booster"):
        TreeShapTables.from_state(state)
    restored = TreeShapTables.from_state(state, booster)
    assert restored.fallback_reason == tables.fallback_reason


@pytest.mark.parametrize("params, reason", [
    ({"booster": "dart", "rate_drop": 0.2, "max_depth": 2}, "dart"),
    ({"booster": "gblinear"}, "gblinear"),
])
def test_other_boosters_fall_back_to_pred_contribs(train_rows, test_rows, params, reason):
    train = xgb.DMatrix(train_rows, label=_labels(train_rows, "binary:logistic", seed=3), missing=np.nan)
    booster = xgb.train({"objective": "binary:logistic", "nthread": 1, "seed": 0, **params}, train,
                        num_boost_round=10)
    tables = TreeShapTables.from_booster(booster, N_FEATURES)
    assert reason in tables.fallback_reason
    np.testing.assert_allclose(tables.contributions(test_rows),
                               _xgboost_contributions(booster, test_rows), rtol=0, atol=TOLERANCE)


def test_named_and_categorical_features(train_rows, test_rows):
    """A model trained on a data frame: names are checked by xgboost; categorical splits fall
    back to pred_contribs, with category codes as values."""
    pd = pytest.importorskip("pandas")
    labels = _labels(train_rows, "binary:logistic", seed=3)
    names = [f"f{j}" for j in range(N_FEATURES)]
    named = xgb.train({"objective": "binary:logistic", "max_depth": 3, "nthread": 1},
                      xgb.DMatrix(pd.DataFrame(train_rows, columns=names), label=labels), 20)
    tables = TreeShapTables.from_booster(named, N_FEATURES)
    assert tables.fallback_reason is None
    np.testing.assert_allclose(tables.contributions(test_rows),
                               named.predict(xgb.DMatrix(pd.DataFrame(test_rows, columns=names)),
                                             pred_contribs=True), rtol=0, atol=TOLERANCE)

    def with_category(rows):
        frame = pd.DataFrame(rows, columns=names)
        frame["f3"] = pd.Categorical(rows[:, 3].astype(int), categories=range(4))
        return frame

    categorical = xgb.train({"objective": "binary:logistic", "max_depth": 3, "nthread": 1},
                            xgb.DMatrix(with_category(train_rows), label=labels,
                                        enable_categorical=True), 20)
    tables = TreeShapTables.from_booster(categorical, N_FEATURES)
    assert tables.fallback_reason == "categorical splits"
    expected = categorical.predict(xgb.DMatrix(with_category(test_rows), enable_categorical=True),
                                   pred_contribs=True)
    np.testing.assert_allclose(tables.contributions(test_rows), expected, rtol=0, atol=TOLERANCE)


def test_small_deep_trees_are_still_tabulated(train_rows, test_rows):
    """The switch is the number of internal nodes, not the depth: trees deeper than 3 that
    keep at most MAX_INTERNAL_NODES splits are tabulated."""
    booster = _train(train_rows, "binary:logistic", 6, 20, grow_policy="lossguide",
                     max_leaves=MAX_INTERNAL_NODES + 1)
    leaf_depths = [line.count("\t") for tree in booster.get_dump() for line in tree.splitlines()
                   if "leaf=" in line]
    assert max(leaf_depths) > 3
    tables = TreeShapTables.from_booster(booster, N_FEATURES)
    assert tables.fallback_reason is None
    np.testing.assert_allclose(tables.contributions(test_rows),
                               _xgboost_contributions(booster, test_rows), rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(tables.margin(test_rows), _xgboost_margin(booster, test_rows),
                               rtol=0, atol=TOLERANCE)


def test_state_round_trip(tmp_path, train_rows, test_rows):
    tables = TreeShapTables.from_booster(_train(train_rows, "survival:cox", 3, 50), N_FEATURES)
    expected_contributions = tables.contributions(test_rows)
    expected_margin = tables.margin(test_rows)
    state = tables.to_state()

    np.savez(tmp_path / "tables.npz", **state)
    with np.load(tmp_path / "tables.npz") as stored:
        from_npz = TreeShapTables.from_state({key: stored[key].item() if stored[key].ndim == 0
                                              else stored[key] for key in stored.files})
    as_json = json.dumps({key: value.tolist() if isinstance(value, np.ndarray) else value
                          for key, value in state.items()})
    from_json = TreeShapTables.from_state(json.loads(as_json))
    for restored in (from_npz, from_json):
        np.testing.assert_array_equal(restored.contributions(test_rows), expected_contributions)
        np.testing.assert_array_equal(restored.margin(test_rows), expected_margin)

    with pytest.raises(ValueError, match="contribution_table"):
        TreeShapTables.from_state({**state, "contribution_table": state["contribution_table"][1:]})
    with pytest.raises(ValueError, match="format"):
        TreeShapTables.from_state({**state, "format": "other/1"})


def test_threads_chunks_and_sizes(train_rows):
    booster = _train(train_rows, "binary:logistic", 3, 150)
    tables = TreeShapTables.from_booster(booster, N_FEATURES)
    rows = _features(5000, seed=4)  # several chunks
    one_thread = tables.contributions(rows)
    np.testing.assert_array_equal(tables.contributions(rows, n_threads=2), one_thread)
    np.testing.assert_array_equal(tables.margin(rows, n_threads=2), tables.margin(rows))
    np.testing.assert_allclose(one_thread, _xgboost_contributions(booster, rows), rtol=0, atol=TOLERANCE)

    np.testing.assert_array_equal(tables.contributions(rows[:1]), one_thread[:1])
    assert tables.contributions(rows[:0]).shape == (0, N_FEATURES + 1)
    assert tables.margin(rows[:0]).shape == (0,)
    with pytest.raises(ValueError, match="shape"):
        tables.contributions(rows[0])


@pytest.mark.parametrize("rounds", [0, 3])
def test_no_trees_or_trees_without_splits(train_rows, test_rows, rounds):
    constant = xgb.DMatrix(train_rows, label=np.full(len(train_rows), 2.0), missing=np.nan)
    booster = xgb.train({"objective": "reg:squarederror", "base_score": 0.5, "nthread": 1},
                        constant, num_boost_round=rounds)
    tables = TreeShapTables.from_booster(booster, N_FEATURES)
    state = tables.to_state()
    assert (state["n_trees"], state["n_slots"]) == (rounds, 0)
    np.testing.assert_allclose(tables.margin(test_rows), _xgboost_margin(booster, test_rows),
                               rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(tables.contributions(test_rows),
                               _xgboost_contributions(booster, test_rows), rtol=0, atol=TOLERANCE)


def test_rejects_what_it_cannot_explain(train_rows):
    booster = _train(train_rows, "binary:logistic", 2, 5)
    with pytest.raises(ValueError, match="features"):
        TreeShapTables.from_booster(booster, N_FEATURES + 1)
    labels = np.arange(len(train_rows)) % 3
    multiclass = xgb.train({"objective": "multi:softprob", "num_class": 3, "max_depth": 2, "nthread": 1},
                           xgb.DMatrix(train_rows, label=labels, missing=np.nan), num_boost_round=2)
    with pytest.raises(ValueError, match="single-output"):
        TreeShapTables.from_booster(multiclass, N_FEATURES)
