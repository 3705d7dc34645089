"""Exact TreeSHAP for shallow xgboost trees at the cost of a prediction.

Path-dependent TreeSHAP (what ``Booster.predict(pred_contribs=True)`` and
``shap.TreeExplainer`` with ``feature_perturbation="tree_path_dependent"`` compute) gives, for
one tree, SHAP values that depend on a row only through the side it takes at each of the
tree's internal nodes: at every internal node, not only along the row's own root-to-leaf path,
because a feature's value enters the conditional expectation of every leaf whose path splits
on it. A tree with ``k`` internal nodes therefore has at most ``2**k`` distinct explanations,
one per *direction pattern*; for shallow trees (a depth-3 tree has at most 7 internal nodes,
so at most 128 patterns) all of them are computed once, when the model is loaded or trained.
A row's explanation is then a sum of table rows, one per tree, found by the same comparisons
as its prediction.

:class:`TreeShapTables` holds those tables for a single-output ``gbtree`` booster with numeric
splits. A model with a tree of more than :data:`MAX_INTERNAL_NODES` internal nodes, a dart or
linear booster, or categorical splits is not tabulated: the object then calls
``pred_contribs`` and says why in :attr:`TreeShapTables.fallback_reason`.
"""

from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import xgboost as xgb

from models.treeshap_tables import MAX_INTERNAL_NODES, Tables, Tree, build_tables, first_round_trees, parse_tree

STATE_FORMAT = "autorisk.treeshap/1"
"""Names the layout of :meth:`TreeShapTables.to_state`; changes whenever that layout does."""


# --------------------------------------------------------------------------- reading the booster


def _dmatrix(booster: xgb.Booster, X32: np.ndarray) -> xgb.DMatrix:
    """``X32`` for ``booster``: a model trained on a data frame checks the feature names and
    types (categorical columns hold category codes)."""
    return xgb.DMatrix(X32, missing=np.nan, feature_names=booster.feature_names,
                       feature_types=booster.feature_types)


def _read_base_margin(booster: xgb.Booster, model: dict, trees: list[Tree], n_features: int) -> float:
    """The model's margin before any tree, read back from xgboost.

    xgboost stores ``base_score`` on the scale of the prediction and turns it into a margin
    with its objective's inverse link (logit, log or identity, depending on the objective, and
    changing between versions); rather than copy that mapping, this asks xgboost for the margin
    of one row after the first boosting round and takes away what that round's trees add.
    xgboost sums in float32 and keeps the base margin as a float32, so the difference is
    rounded to float32: exact when the first leaf is small beside the base margin, otherwise
    within one float32 rounding of the margin.

    ``model`` is the ``gradient_booster["model"]`` part of the booster's JSON and ``trees`` its
    parsed trees.
    """
    probe = np.zeros((1, n_features), dtype=np.float32)
    if booster.num_boosted_rounds() == 0:
        return float(booster.predict(_dmatrix(booster, probe), output_margin=True)[0])
    after_first_round = float(booster.predict(_dmatrix(booster, probe), output_margin=True,
                                              iteration_range=(0, 1))[0])
    first = build_tables([trees[t] for t in first_round_trees(model)], n_features, base_margin=0.0)
    return float(np.float32(after_first_round - first.margin(probe)[0]))


# --------------------------------------------------------------------------- public


class TreeShapTables:
    """Margin and exact path-dependent SHAP values of an xgboost model, by table look-up.

    Build with :meth:`from_booster` (or :meth:`from_state`), then call :meth:`margin` and
    :meth:`contributions`: they equal ``Booster.predict`` with ``output_margin=True`` and
    ``pred_contribs=True`` (up to xgboost's float32 sums), whether the model is tabulated or
    falls back to ``pred_contribs`` (then :attr:`fallback_reason` says why).

    Use the constructors; ``__init__`` takes their results.

    Attributes
    ----------
    n_features : int
        Number of model features: the columns of ``X``.
    fallback_reason : str or None
        Why the model is explained by xgboost's ``pred_contribs`` rather than by tables; None
        when tabulated.
    """

    def __init__(self, n_features: int, *, tables: Tables | None = None,
                 booster: xgb.Booster | None = None, fallback_reason: str | None = None) -> None:
        if (tables is None) == (fallback_reason is None):
            raise ValueError("give either tables, or a fallback reason and its booster")
        if fallback_reason is not None and booster is None:
            raise ValueError(f"explaining by pred_contribs ({fallback_reason}) needs the booster")
        if tables is not None and tables.contribution_table.shape[1] != n_features:
            raise ValueError(f"tables for {tables.contribution_table.shape[1]} features, "
                             f"n_features={n_features}")
        self.n_features = int(n_features)
        self.fallback_reason = fallback_reason
        self._tables = tables
        self._booster = booster

    @classmethod
    def from_booster(cls, booster: xgb.Booster, n_features: int) -> TreeShapTables:
        """Parse ``booster``'s trees and tabulate them, or fall back to ``pred_contribs``.

        The fallback applies to a model with a tree of more than :data:`MAX_INTERNAL_NODES`
        internal nodes (tables of ``2**internal_nodes`` rows per tree), a ``dart`` booster
        (its trees are weighted), a ``gblinear`` booster, or categorical splits.

        Parameters
        ----------
        booster : xgboost.Booster
            Single-output model: any objective (``binary:logistic``, ``survival:cox``,
            regression, ...), any ``base_score``.
        n_features : int
            Number of features the booster was trained on (``booster.num_features()``).

        Returns
        -------
        TreeShapTables

        Raises
        ------
        ValueError
            If ``n_features`` is not the booster's, or the model has several outputs
            (multi-class or multi-target), whose explanations have another shape.
        """
        if n_features != booster.num_features():
            raise ValueError(f"n_features={n_features}, but the booster has "
                             f"{booster.num_features()} features")
        learner = json.loads(booster.save_raw("json"))["learner"]
        parameters = learner["learner_model_param"]
        if int(parameters["num_class"]) > 1 or int(parameters.get("num_target", 1)) > 1:
            raise ValueError("only single-output models are supported (one margin per row)")
        gradient_booster = learner["gradient_booster"]
        if gradient_booster["name"] != "gbtree":
            return cls(n_features, booster=booster,
                       fallback_reason=f"{gradient_booster['name']} booster")
        model = gradient_booster["model"]
        if any(kind != 0 for tree in model["trees"] for kind in tree.get("split_type", [])):
            return cls(n_features, booster=booster, fallback_reason="categorical splits")
        trees = [parse_tree(tree) for tree in model["trees"]]
        largest = max((tree.n_internal_nodes for tree in trees), default=0)
        if largest > MAX_INTERNAL_NODES:
            return cls(n_features, booster=booster, fallback_reason=(
                f"a tree has {largest} internal nodes, more than {MAX_INTERNAL_NODES}"))
        base_margin = _read_base_margin(booster, model, trees, n_features)
        return cls(n_features, tables=build_tables(trees, n_features, base_margin))

    @property
    def n_trees(self) -> int:
        """Number of tabulated trees (0 under the fallback)."""
        return 0 if self._tables is None else self._tables.n_trees

    @property
    def expected_value(self) -> float:
        """The bias (last column of :meth:`contributions`): the margin before any tree plus
        each tree's cover-weighted mean leaf."""
        if self._tables is None:
            return float(self.contributions(np.zeros((1, self.n_features)))[0, -1])
        return self._tables.expected_value

    def _as_float32(self, X) -> np.ndarray:
        # xgboost reads every value as float32 before comparing it with its float32 threshold;
        # comparing float64 values would send a value just below a threshold the other way.
        matrix = np.asarray(X, dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape[1] != self.n_features:
            raise ValueError(f"X: expected shape (n, {self.n_features}), got {matrix.shape}")
        return matrix

    def _by_chunks(self, compute, X32: np.ndarray, out: np.ndarray, n_threads: int) -> np.ndarray:
        """``out[chunk] = compute(X32[chunk])`` over the chunks of rows, on ``n_threads`` threads."""
        chunks = self._tables.chunks(len(X32))

        def work(chunk: slice) -> None:
            out[chunk] = compute(X32[chunk])

        if n_threads <= 1 or len(chunks) < 2:
            for chunk in chunks:
                work(chunk)
        else:
            # numpy releases the GIL in its gathers, comparisons and sums, so chunks overlap.
            with ThreadPoolExecutor(max_workers=n_threads) as pool:
                list(pool.map(work, chunks))
        return out

    def margin(self, X, *, n_threads: int = 1) -> np.ndarray:
        """Margin of each row: the base margin plus the leaf each tree sends the row to.

        Parameters
        ----------
        X : array-like of shape (n, n_features)
            Feature values, read as float32 as xgboost does; NaN is missing and follows each
            node's default direction.
        n_threads : int, default 1
            Threads over chunks of rows (64 rows for 400 trees of 11 features, more for
            smaller models); a batch of one chunk runs on the calling thread. Under the
            fallback, the booster's own ``nthread`` applies.

        Returns
        -------
        ndarray of shape (n,), float64
            ``booster.predict(DMatrix(X), output_margin=True)`` (which sums in float32).
        """
        X32 = self._as_float32(X)
        if self._tables is None:
            return self._booster.predict(_dmatrix(self._booster, X32), output_margin=True).astype(np.float64)
        return self._by_chunks(self._tables.margin, X32, np.empty(len(X32)), n_threads)

    def contributions(self, X, *, n_threads: int = 1) -> np.ndarray:
        """Exact path-dependent SHAP value of every feature, and the bias, of each row.

        Parameters
        ----------
        X : array-like of shape (n, n_features)
            Feature values, read as float32 as xgboost does; NaN is missing and follows each
            node's default direction.
        n_threads : int, default 1
            Threads over chunks of rows (64 rows for 400 trees of 11 features, more for
            smaller models); a batch of one chunk runs on the calling thread. Under the
            fallback, the booster's own ``nthread`` applies.

        Returns
        -------
        ndarray of shape (n, n_features + 1), float64
            Column ``j < n_features``: SHAP value of feature ``j`` on the margin scale; last
            column: the bias, :attr:`expected_value`. As
            ``booster.predict(DMatrix(X), pred_contribs=True)``; each row sums to
            :meth:`margin` (to float64 rounding when tabulated).
        """
        X32 = self._as_float32(X)
        if self._tables is None:
            return self._booster.predict(_dmatrix(self._booster, X32), pred_contribs=True).astype(np.float64)
        result = np.empty((len(X32), self.n_features + 1))
        result[:, -1] = self._tables.expected_value
        self._by_chunks(self._tables.contributions, X32, result[:, :-1], n_threads)
        return result

    def to_state(self) -> dict:
        """The tables as plain values, to store beside a model version.

        Returns
        -------
        dict
            ``format`` (:data:`STATE_FORMAT`), ``n_features``, ``n_trees`` and ``n_slots``
            (int; slots are pattern bits per tree, the largest tree's internal nodes),
            ``base_margin`` and ``expected_value`` (float), and the numpy arrays ``slot_features`` (n_trees, n_slots) int64,
            ``slot_thresholds`` (n_trees, n_slots) float32, ``slot_default_left``
            (n_trees, n_slots) bool, ``leaf_values`` (n_trees * 2**n_slots,) float64 and
            ``contribution_table`` (n_trees * 2**n_slots, n_features) float64. Store the
            arrays with ``numpy.savez``, or in JSON after ``.tolist()`` (JSON keeps float64
            and float32 values exactly). Under the fallback the state is ``format``,
            ``n_features`` and ``fallback_reason`` (str) only, and :meth:`from_state` needs the
            booster.
        """
        state = {"format": STATE_FORMAT, "n_features": self.n_features}
        if self._tables is None:
            return {**state, "fallback_reason": self.fallback_reason}
        tables = self._tables
        return {
            **state,
            "n_trees": tables.n_trees,
            "n_slots": tables.n_slots,
            "base_margin": tables.base_margin,
            "expected_value": tables.expected_value,
            "slot_features": tables.slot_features.astype(np.int64),
            "slot_thresholds": tables.slot_thresholds.copy(),
            "slot_default_left": tables.slot_default_left.copy(),
            "leaf_values": tables.leaf_values.copy(),
            "contribution_table": tables.contribution_table.copy(),
        }

    @classmethod
    def from_state(cls, state: dict, booster: xgb.Booster | None = None) -> TreeShapTables:
        """Rebuild from :meth:`to_state`, its arrays as numpy arrays or nested lists.

        Parameters
        ----------
        state : dict
            As returned by :meth:`to_state`, possibly through ``numpy.savez`` or JSON.
        booster : xgboost.Booster, optional
            The model the state was made from; needed only when the state is a fallback.

        Returns
        -------
        TreeShapTables

        Raises
        ------
        ValueError
            On another format, inconsistent shapes, or a fallback state without its booster.
        """
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"state format {state.get('format')!r}, expected {STATE_FORMAT!r}")
        n_features = int(state["n_features"])
        if state.get("fallback_reason") is not None:
            return cls(n_features, booster=booster, fallback_reason=str(state["fallback_reason"]))
        # Nested lists lose the shape of an array with a zero-length axis (no trees, or only
        # single-leaf trees), hence the stored sizes.
        n_trees, n_slots = int(state["n_trees"]), int(state["n_slots"])
        n_rows = n_trees << n_slots

        def array(name: str, dtype, shape: tuple) -> np.ndarray:
            values = np.asarray(state[name], dtype=dtype)
            if values.size != math.prod(shape):
                raise ValueError(f"{name}: {values.size} values, expected shape {shape}")
            return np.ascontiguousarray(values.reshape(shape))

        tables = Tables(
            base_margin=float(state["base_margin"]),
            expected_value=float(state["expected_value"]),
            slot_features=array("slot_features", np.intp, (n_trees, n_slots)),
            slot_thresholds=array("slot_thresholds", np.float32, (n_trees, n_slots)),
            slot_default_left=array("slot_default_left", bool, (n_trees, n_slots)),
            leaf_values=array("leaf_values", np.float64, (n_rows,)),
            contribution_table=array("contribution_table", np.float64, (n_rows, n_features)),
        )
        return cls(n_features, tables=tables)
