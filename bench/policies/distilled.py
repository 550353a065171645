"""A distilled rule: a depth <= 3 decision tree fitted to the oracle's choices on the training scenarios.

What a practitioner would hand-write after looking at the oracle: at most eight
leaves, each a fixed action, split on the observation's named fields (DNN
features, loads, signal, ...). Not privileged at run time - it acts on the
observation only; the oracle is used only to label the *training* scenarios.

Fit (suite choice): scikit-learn's ``DecisionTreeClassifier(max_depth=3,
random_state=0)`` on (observation, oracle action) pairs along the oracle's own
rollouts (:mod:`bench.policies.episodes`) of ``train_scenarios`` x
``train_seeds`` - seeds the evaluation never uses. Saved as JSON of the tree
(fields, split feature and threshold per node, children, leaf action by name);
never pickle. Acting walks the tree in pure Python (``obs[f] <= threshold`` goes
left, as scikit-learn does).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from bench.policies.base import Policy, register
from bench.policies.episodes import EpisodeData, collect_episodes

FORMAT = "bench.distilled_tree"
MAX_DEPTH = 3


class DistilledTree(Policy):
    """A small decision tree over named observation fields; leaves are actions."""

    name = "distilled"

    def __init__(self, tree: dict[str, Any]):
        self.tree = tree
        self.feature = [int(f) for f in tree["feature"]]
        self.threshold = [float(t) for t in tree["threshold"]]
        self.left = [int(c) for c in tree["left"]]
        self.right = [int(c) for c in tree["right"]]
        self.leaf_action = [int(a) for a in tree["action"]]

    @classmethod
    def fit(cls, episodes: Sequence[EpisodeData], fields: Sequence[str], action_names: Sequence[str],
            max_depth: int = MAX_DEPTH) -> "DistilledTree":
        """Fit the tree to the oracle's actions (labels) on the episodes' observations."""
        from sklearn.tree import DecisionTreeClassifier

        if not 1 <= int(max_depth) <= MAX_DEPTH:
            raise ValueError(f"distilled rule: max_depth must be in [1, {MAX_DEPTH}], got {max_depth}")
        x = np.concatenate([ep.obs for ep in episodes]).astype(np.float32)
        y = np.concatenate([ep.oracle for ep in episodes])
        clf = DecisionTreeClassifier(max_depth=int(max_depth), random_state=0).fit(x, y)
        t = clf.tree_
        leaf = clf.classes_[t.value[:, 0, :].argmax(axis=1)]
        tree = {"format": FORMAT, "version": 1, "fields": list(fields), "max_depth": int(max_depth),
                "feature": t.feature.tolist(), "threshold": t.threshold.tolist(),
                "left": t.children_left.tolist(), "right": t.children_right.tolist(),
                "action": leaf.tolist(), "action_name": [str(action_names[a]) for a in leaf],
                "samples": t.n_node_samples.tolist(), "train_agreement": float((clf.predict(x) == y).mean())}
        return cls(tree)

    def act(self, obs) -> int:
        node = 0
        while self.left[node] != -1:
            node = self.left[node] if float(obs[self.feature[node]]) <= self.threshold[node] else self.right[node]
        return self.leaf_action[node]

    def act_batch(self, obs: np.ndarray) -> np.ndarray:
        return np.array([self.act(o) for o in np.asarray(obs)], dtype=np.int64)

    def rules(self) -> list[str]:
        """The tree as readable if/else lines (what a practitioner would write)."""
        names, out = self.tree["fields"], []

        def walk(node: int, depth: int) -> None:
            pad = "  " * depth
            if self.left[node] == -1:
                out.append(f"{pad}-> {self.tree['action_name'][node]}")
                return
            f, thr = names[self.feature[node]], self.threshold[node]
            out.append(f"{pad}if {f} <= {thr:.4g}:")
            walk(self.left[node], depth + 1)
            out.append(f"{pad}else:  # {f} > {thr:.4g}")
            walk(self.right[node], depth + 1)

        walk(0, 0)
        return out

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.tree, indent=1) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path, env=None) -> "DistilledTree":
        path = Path(path)
        tree = json.loads(path.read_text())
        if tree.get("format") != FORMAT:
            raise ValueError(f"{path}: not a distilled tree (format={tree.get('format')!r}, expected {FORMAT!r})")
        if env is not None:
            from bench.sim.envs import obs_fields

            names = list(env.unwrapped.action_table["name"])
            if list(obs_fields(env)) != tree["fields"] or any(names[a] != n for a, n in zip(tree["action"],
                                                                                           tree["action_name"])):
                raise ValueError(f"{path}: fitted for other observation fields or actions than this env's")
        return cls(tree)


@register("distilled", order=90, colour="#e377c2", marker="P", label="the distilled depth-3 rule")
def distilled(env, path: str | Path | None = None, train_scenarios: Sequence[str] | None = None,
              train_seeds: Sequence[int] | None = None, n_steps: int | None = None, max_depth: int = MAX_DEPTH,
              **_) -> DistilledTree:
    """A saved tree (``path=``), or one fitted on ``train_scenarios`` x ``train_seeds`` (both required)."""
    if path is not None:
        return DistilledTree.load(path, env)
    if not train_scenarios or not train_seeds:
        raise ValueError("distilled: pass path=<tree.json> or train_scenarios=[...] and train_seeds=[...] "
                         "(the training scenarios, never the evaluation's)")
    from bench.sim.envs import obs_fields

    episodes = collect_episodes(env, train_scenarios, train_seeds, n_steps)  # 0 / None: whole scenarios
    return DistilledTree.fit(episodes, obs_fields(env), list(env.unwrapped.action_table["name"]), max_depth)
