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

import dataclasses
import json
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import xgboost as xgb

MAX_INTERNAL_NODES = 8
"""Most internal nodes a tree may have for its model to be tabulated.

A tree's tables have ``2**internal_nodes`` rows of ``n_features + 1`` float64 values, and
building them costs as much again: 7 internal nodes (every tree of depth 3 or less) make 128
rows, about 12 kB per tree at 11 features; 15 (a full depth-4 tree) would make 32,768 rows,
3 MB per tree or 1.2 GB for 400 trees. Eight still allows a depth-4 tree that kept few splits,
and keeps a pattern within one byte (patterns are summed as uint8). A model with any larger
tree is explained by ``pred_contribs``.
"""

STATE_FORMAT = "autorisk.treeshap/1"
"""Names the layout of :meth:`TreeShapTables.to_state`; changes whenever that layout does."""

_CHUNK_BYTES = 2 << 20
"""Bytes of table rows gathered at once. A batch is evaluated in chunks of rows so that the
gathered rows (n_trees, rows, n_features) stay in cache; for a whole batch they would be
written to and read back from memory, which costs more than the look-ups themselves."""

_MIN_CHUNK_ROWS = 64
"""Fewest rows per chunk: with fewer, the fixed cost of each numpy call dominates."""


# --------------------------------------------------------------------------- parsing the model


@dataclasses.dataclass(frozen=True, eq=False)
class _Tree:
    """One regression tree with numeric splits, as read from xgboost's JSON model.

    Attributes
    ----------
    features, thresholds, default_left : ndarray of shape (k,)
        Split feature (int), split condition (float32: left when ``x < threshold``) and
        direction of a missing value (bool) of each of the ``k`` reachable internal nodes,
        in depth-first order: position ``s`` is the tree's slot ``s``.
    leaves : list of (float, list of (int, bool, int, float))
        Per reachable leaf: its value and its path from the root, one
        ``(slot, to_left, feature, cover_fraction)`` per internal node on it, the fraction
        being the cover (sum of hessians) of the child taken over the node's.
    """

    features: np.ndarray
    thresholds: np.ndarray
    default_left: np.ndarray
    leaves: list

    @property
    def n_internal_nodes(self) -> int:
        return len(self.features)


def _parse_tree(tree: dict) -> _Tree:
    """Read one tree of ``Booster.save_raw("json")``.

    xgboost keeps a leaf's value in ``split_conditions`` and a node's cover in ``sum_hessian``.
    Pruned nodes may stay in the arrays, so only the nodes reachable from the root (node 0)
    are read.
    """
    left, right = tree["left_children"], tree["right_children"]
    conditions, covers = tree["split_conditions"], tree["sum_hessian"]
    internal_nodes, leaves = [], []

    def visit(node: int, path: list) -> None:
        if left[node] == -1:
            leaves.append((float(np.float32(conditions[node])), path))
            return
        slot = len(internal_nodes)
        internal_nodes.append(node)
        feature = int(tree["split_indices"][node])
        for child, to_left in ((left[node], True), (right[node], False)):
            fraction = float(np.float32(covers[child])) / float(np.float32(covers[node]))
            visit(child, [*path, (slot, to_left, feature, fraction)])

    visit(0, [])
    return _Tree(
        features=np.array([tree["split_indices"][n] for n in internal_nodes], dtype=np.intp),
        # The JSON holds each float32 in its shortest round-trip decimal form, so rounding the
        # parsed float64 to float32 gives back exactly the float32 xgboost compares with.
        thresholds=np.array([conditions[n] for n in internal_nodes], dtype=np.float32),
        default_left=np.array([bool(tree["default_left"][n]) for n in internal_nodes], dtype=bool),
        leaves=leaves,
    )


def _first_round_trees(model: dict) -> list[int]:
    """Indices of the trees of the first boosting round (several under ``num_parallel_tree``)."""
    pointers = model.get("iteration_indptr")
    if pointers is not None:
        return list(range(pointers[0], pointers[1]))
    return list(range(int(model["gbtree_model_param"]["num_parallel_tree"])))


# --------------------------------------------------------------------------- the tables of a tree


def _shapley_weights(n_players: int) -> np.ndarray:
    """``w[s] = s! (d - s - 1)! / d!`` for ``d = n_players``, shape (d,): weight of a coalition
    of ``s`` other players in a Shapley value."""
    d = n_players
    return np.array([math.factorial(s) * math.factorial(d - s - 1) / math.factorial(d)
                     for s in range(d)])


def _tabulate_tree(tree: _Tree, n_slots: int, n_features: int):
    """Leaf reached and exact path-dependent SHAP values of one tree, for every pattern.

    Pattern ``p`` sends a row left at slot ``s`` when bit ``s`` of ``p`` is set. Path-dependent
    TreeSHAP explains the game ``v(S)``: the tree's output when the features in ``S`` are known
    and the others are averaged out over the training cover. Per leaf of value ``v`` that game
    is ``v * prod_{j in S} o_j * prod_{j not in S} z_j`` over the distinct features ``j`` of
    the leaf's path, where ``o_j`` is 1 when the row takes the leaf's side at every node of the
    path that splits on ``j`` (else 0) and ``z_j`` is the product of those nodes' cover
    fractions. Its Shapley values are ``phi_i = v (o_i - z_i) sum_s w[s] e_s``, ``e_s`` being the
    coefficient of ``t**s`` in ``prod_{j != i} (z_j + o_j t)``. A tree's values are the sum over
    its leaves: Shapley values are linear in the game, and a feature off a leaf's path is a
    null player of that leaf's game.

    Parameters
    ----------
    tree : _Tree
    n_slots : int
        Pattern bits of the model (its largest tree's internal nodes). Patterns with a bit set
        beyond this tree's internal nodes never occur; their rows are filled all the same.
    n_features : int

    Returns
    -------
    leaf_values : ndarray of shape (2**n_slots,)
        Value of the leaf each pattern reaches: the tree's margin.
    contributions : ndarray of shape (2**n_slots, n_features)
        SHAP value of each feature for each pattern.
    expected_value : float
        ``v(empty set)``, the cover-weighted mean of the leaves: the tree's share of the bias.
    """
    n_patterns = 1 << n_slots
    goes_left = (np.arange(n_patterns)[:, None] >> np.arange(n_slots)) & 1  # (P, n_slots)
    leaf_values = np.zeros(n_patterns)
    contributions = np.zeros((n_patterns, n_features))
    expected_value = 0.0
    for value, path in tree.leaves:
        one, zero = {}, {}  # o_j of shape (P,) and z_j, per distinct feature j of the path
        for slot, to_left, feature, fraction in path:
            follows = goes_left[:, slot] if to_left else 1 - goes_left[:, slot]
            one[feature] = one.get(feature, 1) * follows
            zero[feature] = zero.get(feature, 1.0) * fraction
        leaf_values += value * math.prod(one.values(), start=np.ones(n_patterns))
        expected_value += value * math.prod(zero.values())
        if not one:
            continue  # a tree that is a single leaf: no feature has any effect
        weights = _shapley_weights(len(one))
        for i in one:
            # coefficients[s], shape (P,): coefficient of t**s in prod_{j != i} (z_j + o_j t).
            coefficients = [np.ones(n_patterns)]
            for j in one:
                if j != i:
                    constant = [zero[j] * c for c in coefficients] + [0.0]
                    linear = [0.0] + [one[j] * c for c in coefficients]
                    coefficients = [a + b for a, b in zip(constant, linear, strict=True)]
            weighted = sum(w * c for w, c in zip(weights, coefficients, strict=True))
            contributions[:, i] += value * (one[i] - zero[i]) * weighted
    return leaf_values, contributions, expected_value


# --------------------------------------------------------------------------- evaluation


@dataclasses.dataclass(frozen=True, eq=False)
class _Tables:
    """The tables of a whole model and their look-up; the layout of :meth:`TreeShapTables.to_state`.

    Attributes
    ----------
    base_margin : float
        Margin before any tree.
    expected_value : float
        The bias: ``base_margin`` plus every tree's cover-weighted mean leaf.
    slot_features, slot_thresholds, slot_default_left : ndarray of shape (n_trees, n_slots)
        Split feature (intp), float32 threshold and missing direction (bool) of each tree's
        slots. Trees with fewer internal nodes than ``n_slots`` are padded with slots that send
        every row right (``x < -inf`` is false; missing goes right), leaving those bits at 0.
    leaf_values : ndarray of shape (n_trees * 2**n_slots,)
        Leaf value reached by tree ``t`` under pattern ``p``, at row ``t * 2**n_slots + p``.
    contribution_table : ndarray of shape (n_trees * 2**n_slots, n_features)
        SHAP values of tree ``t`` under pattern ``p``, at the same row.
    """

    base_margin: float
    expected_value: float
    slot_features: np.ndarray
    slot_thresholds: np.ndarray
    slot_default_left: np.ndarray
    leaf_values: np.ndarray
    contribution_table: np.ndarray

    def __post_init__(self) -> None:
        n_trees, n_slots = self.slot_features.shape
        n_features = self.contribution_table.shape[1]
        if n_slots > MAX_INTERNAL_NODES:
            raise ValueError(f"{n_slots} slots per tree, at most {MAX_INTERNAL_NODES}")
        shapes = {
            "slot_thresholds": (self.slot_thresholds.shape, (n_trees, n_slots)),
            "slot_default_left": (self.slot_default_left.shape, (n_trees, n_slots)),
            "leaf_values": (self.leaf_values.shape, (n_trees << n_slots,)),
            "contribution_table": (self.contribution_table.shape, (n_trees << n_slots, n_features)),
        }
        for name, (shape, expected) in shapes.items():
            if shape != expected:
                raise ValueError(f"{name}: shape {shape}, expected {expected}")
        if self.slot_features.size and not (
                0 <= self.slot_features.min() and self.slot_features.max() < n_features):
            raise ValueError(f"slot_features: feature indices outside 0..{n_features - 1}")
        # Derived once here rather than per call (a call for one row must stay in microseconds).
        derived = {
            "_tree_offsets": (np.arange(n_trees, dtype=np.intp) << n_slots)[:, None],
            "_flat_features": self.slot_features.reshape(-1),
            "_flat_thresholds": self.slot_thresholds.reshape(-1, 1),
            "_flat_default_left": self.slot_default_left.reshape(-1, 1),
            "_slot_bits": (1 << np.arange(n_slots)).astype(np.uint8),
        }
        for name, array in derived.items():
            object.__setattr__(self, name, array)

    @property
    def n_trees(self) -> int:
        return self.slot_features.shape[0]

    @property
    def n_slots(self) -> int:
        return self.slot_features.shape[1]

    def pattern_rows(self, X32: np.ndarray) -> np.ndarray:
        """Row of each tree's tables that each row of ``X32`` selects.

        Parameters
        ----------
        X32 : ndarray of shape (n, n_features), float32
            NaN is missing.

        Returns
        -------
        ndarray of shape (n_trees, n)
            ``t * 2**n_slots + pattern``, the pattern's bit ``s`` set when the row goes left
            at slot ``s`` of tree ``t``.
        """
        # Slot-major: one contiguous row of n values per (tree, slot), so that the gather, the
        # comparisons and the sum of bits all run over contiguous memory.
        columns = np.ascontiguousarray(X32.T)  # (n_features, n)
        values = columns[self._flat_features]  # (n_trees * n_slots, n)
        goes_left = values < self._flat_thresholds  # NaN compares false, so goes right...
        missing = np.isnan(values)
        if missing.any():
            goes_left |= missing & self._flat_default_left  # ...unless its default is left
        bits = goes_left.reshape(self.n_trees, self.n_slots, len(X32)).view(np.uint8)
        patterns = np.einsum("s,tsn->tn", self._slot_bits, bits)  # (n_trees, n) uint8
        return self._tree_offsets + patterns

    def margin(self, X32: np.ndarray) -> np.ndarray:
        """Margin of each row of ``X32`` (n, n_features): shape (n,)."""
        return self.leaf_values[self.pattern_rows(X32)].sum(axis=0) + self.base_margin

    def contributions(self, X32: np.ndarray) -> np.ndarray:
        """SHAP values of each row of ``X32`` (n, n_features), bias excluded: shape (n, n_features)."""
        return np.take(self.contribution_table, self.pattern_rows(X32), axis=0).sum(axis=0)

    def chunks(self, n_rows: int) -> list[slice]:
        """Consecutive slices of ``n_rows`` rows, each small enough to keep its gathers in cache."""
        row_bytes = max(1, self.n_trees * self.contribution_table.shape[1] * 8)
        size = max(_MIN_CHUNK_ROWS, _CHUNK_BYTES // row_bytes)
        return [slice(start, min(start + size, n_rows)) for start in range(0, n_rows, size)]


def _build_tables(trees: list[_Tree], n_features: int, base_margin: float) -> _Tables:
    """Tabulate every tree of a model whose trees have at most :data:`MAX_INTERNAL_NODES`
    internal nodes."""
    n_trees = len(trees)
    n_slots = max((tree.n_internal_nodes for tree in trees), default=0)
    slot_features = np.zeros((n_trees, n_slots), dtype=np.intp)
    slot_thresholds = np.full((n_trees, n_slots), -np.inf, dtype=np.float32)
    slot_default_left = np.zeros((n_trees, n_slots), dtype=bool)
    leaf_values = np.empty((n_trees, 1 << n_slots))
    contribution_table = np.empty((n_trees, 1 << n_slots, n_features))
    expected_value = base_margin
    for t, tree in enumerate(trees):
        k = tree.n_internal_nodes
        slot_features[t, :k] = tree.features
        slot_thresholds[t, :k] = tree.thresholds
        slot_default_left[t, :k] = tree.default_left
        leaf_values[t], contribution_table[t], tree_expected = _tabulate_tree(tree, n_slots, n_features)
        expected_value += tree_expected
    return _Tables(base_margin=base_margin, expected_value=expected_value,
                   slot_features=slot_features, slot_thresholds=slot_thresholds,
                   slot_default_left=slot_default_left, leaf_values=leaf_values.reshape(-1),
                   contribution_table=contribution_table.reshape(-1, n_features))


def _dmatrix(booster: xgb.Booster, X32: np.ndarray) -> xgb.DMatrix:
    """``X32`` for ``booster``: a model trained on a data frame checks the feature names and
    types (categorical columns hold category codes)."""
    return xgb.DMatrix(X32, missing=np.nan, feature_names=booster.feature_names,
                       feature_types=booster.feature_types)


def _read_base_margin(booster: xgb.Booster, model: dict, trees: list[_Tree], n_features: int) -> float:
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
    first = _build_tables([trees[t] for t in _first_round_trees(model)], n_features, base_margin=0.0)
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

    def __init__(self, n_features: int, *, tables: _Tables | None = None,
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
        trees = [_parse_tree(tree) for tree in model["trees"]]
        largest = max((tree.n_internal_nodes for tree in trees), default=0)
        if largest > MAX_INTERNAL_NODES:
            return cls(n_features, booster=booster, fallback_reason=(
                f"a tree has {largest} internal nodes, more than {MAX_INTERNAL_NODES}"))
        base_margin = _read_base_margin(booster, model, trees, n_features)
        return cls(n_features, tables=_build_tables(trees, n_features, base_margin))

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

        tables = _Tables(
            base_margin=float(state["base_margin"]),
            expected_value=float(state["expected_value"]),
            slot_features=array("slot_features", np.intp, (n_trees, n_slots)),
            slot_thresholds=array("slot_thresholds", np.float32, (n_trees, n_slots)),
            slot_default_left=array("slot_default_left", bool, (n_trees, n_slots)),
            leaf_values=array("leaf_values", np.float64, (n_rows,)),
            contribution_table=array("contribution_table", np.float64, (n_rows, n_features)),
        )
        return cls(n_features, tables=tables)
