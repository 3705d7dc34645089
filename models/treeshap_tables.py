"""The direction-pattern tables behind :mod:`models.treeshap`: xgboost's trees parsed from its JSON, and per
tree every pattern's leaf weight and exact path-dependent SHAP values, looked up by the sides a row takes.

A row's pattern in a tree is the bits of its comparisons at the tree's internal nodes (its *slots*);
:class:`Tables` holds, for every tree of a model, the margin and the SHAP row of each of the ``2**slots``
patterns, so that a batch's margin and explanation are sums of table rows.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

MAX_INTERNAL_NODES = 8
"""Most internal nodes a tree may have for its model to be tabulated.

A tree's tables have ``2**internal_nodes`` rows of ``n_features + 1`` float64 values, and
building them costs as much again: 7 internal nodes (every tree of depth 3 or less) make 128
rows, about 12 kB per tree at 11 features; 15 (a full depth-4 tree) would make 32,768 rows,
3 MB per tree or 1.2 GB for 400 trees. Eight still allows a depth-4 tree that kept few splits,
and keeps a pattern within one byte (patterns are summed as uint8). A model with any larger
tree is explained by ``pred_contribs``.
"""

_CHUNK_BYTES = 2 << 20
"""Bytes of table rows gathered at once. A batch is evaluated in chunks of rows so that the
gathered rows (n_trees, rows, n_features) stay in cache; for a whole batch they would be
written to and read back from memory, which costs more than the look-ups themselves."""

_MIN_CHUNK_ROWS = 64
"""Fewest rows per chunk: with fewer, the fixed cost of each numpy call dominates."""


# --------------------------------------------------------------------------- parsing the model


@dataclasses.dataclass(frozen=True, eq=False)
class Tree:
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


def parse_tree(tree: dict) -> Tree:
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
    return Tree(
        features=np.array([tree["split_indices"][n] for n in internal_nodes], dtype=np.intp),
        # The JSON holds each float32 in its shortest round-trip decimal form, so rounding the
        # parsed float64 to float32 gives back exactly the float32 xgboost compares with.
        thresholds=np.array([conditions[n] for n in internal_nodes], dtype=np.float32),
        default_left=np.array([bool(tree["default_left"][n]) for n in internal_nodes], dtype=bool),
        leaves=leaves,
    )


def first_round_trees(model: dict) -> list[int]:
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


def tabulate_tree(tree: Tree, n_slots: int, n_features: int):
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
    tree : Tree
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
class Tables:
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


def build_tables(trees: list[Tree], n_features: int, base_margin: float) -> Tables:
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
        leaf_values[t], contribution_table[t], tree_expected = tabulate_tree(tree, n_slots, n_features)
        expected_value += tree_expected
    return Tables(base_margin=base_margin, expected_value=expected_value,
                   slot_features=slot_features, slot_thresholds=slot_thresholds,
                   slot_default_left=slot_default_left, leaf_values=leaf_values.reshape(-1),
                   contribution_table=contribution_table.reshape(-1, n_features))
