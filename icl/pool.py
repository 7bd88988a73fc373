"""Experience pool: a bounded ring buffer of (observation, action, reward) records and the
demonstration-selection strategies of the ICL policy and its kNN control.

A record is one decided task: its observation features (the numbers a prompt shows), task
type, action, reward, episode and slot. Distances are Euclidean over the numeric features,
each divided by its spread in the pool (normalised), plus ``type_penalty`` when the task
types differ.

Strategies (``select``):
  random   k records drawn uniformly;
  recent   the k most recent records (oldest first);
  nearest  the k records closest to the query (least similar first);
  ranked   the k records of highest reward - tau * distance (lowest score first);
  state    records of the same task type: the k/2 best and k/2 worst outcomes
           (positive and negative examples; worst first, best last).
"""

from __future__ import annotations

import os

import numpy as np

STRATEGIES = ("random", "recent", "nearest", "ranked", "state")


class ExperiencePool:
    def __init__(self, n_features: int, capacity: int = 4096, type_penalty: float = 2.0):
        if capacity < 1:
            raise ValueError(f"pool capacity = {capacity}: allowed >= 1")
        self.capacity, self.type_penalty = int(capacity), float(type_penalty)
        self.features = np.zeros((capacity, n_features), np.float32)
        self.task_type = np.zeros(capacity, np.int32)
        self.action = np.zeros(capacity, np.int32)
        self.reward = np.zeros(capacity, np.float32)
        self.episode = np.zeros(capacity, np.int32)
        self.slot = np.zeros(capacity, np.int32)
        self.stamp = np.zeros(capacity, np.int64)      # insertion number (recency)
        self.n_added = 0

    def __len__(self) -> int:
        return min(self.n_added, self.capacity)

    def add(self, features, task_type, action, reward, episode, slot) -> None:
        """Append records (arrays with a leading record axis); the oldest are overwritten when full."""
        n = len(task_type)
        if n == 0:
            return
        idx = (self.n_added + np.arange(n)) % self.capacity
        self.features[idx] = features
        self.task_type[idx], self.action[idx], self.reward[idx] = task_type, action, reward
        self.episode[idx], self.slot[idx] = episode, slot
        self.stamp[idx] = self.n_added + np.arange(n)
        self.n_added += n

    # ------------------------------------------------------------------ selection
    def _live(self) -> np.ndarray:
        return np.arange(len(self))

    def distances(self, features: np.ndarray, task_type: np.ndarray, records: np.ndarray | None = None,
                  columns: np.ndarray | None = None) -> np.ndarray:
        """Normalised distance from each query [Q, F] to each live record (or to ``records``), [Q, N]; over the
        feature ``columns`` only when given. Each feature is divided by its spread over the whole pool."""
        live = self._live()
        f = self.features[live]
        scale = f.std(0) + 1e-6 if len(live) > 1 else np.ones(f.shape[1], np.float32)
        records = live if records is None else records
        cols = slice(None) if columns is None else columns
        diff = (features[:, None, cols] - self.features[records][None, :, cols]) / scale[cols]
        d = np.sqrt((diff ** 2).sum(-1))
        return d + self.type_penalty * (task_type[:, None] != self.task_type[records][None])

    def select_per_action(self, strategy: str, k: int, features: np.ndarray, task_type: np.ndarray,
                          n_actions: int, n_base: int, rng: np.random.Generator, tau: float = 0.25
                          ) -> list[list[np.ndarray]]:
        """For each query, for each action a: ``select`` among the records of action a only, with distances over
        the base features and a's own load column (``n_base + a``: the other servers' loads do not change a's
        outcome). Returns [Q][A] index arrays, most relevant last."""
        per = []
        for a in range(n_actions):
            mine = self._live()[self.action[:len(self)] == a]
            cols = np.r_[np.arange(n_base), n_base + a]
            per.append(self.select(strategy, k, features, task_type, rng, tau, records=mine, columns=cols))
        return [[per[a][i] for a in range(n_actions)] for i in range(len(task_type))]

    def select(self, strategy: str, k: int, features: np.ndarray, task_type: np.ndarray,
               rng: np.random.Generator, tau: float = 0.25, records: np.ndarray | None = None,
               columns: np.ndarray | None = None) -> list[np.ndarray]:
        """Indices of the demonstrations for each query, in prompt order (most relevant last); among ``records``
        (live indices) when given, with distances over the feature ``columns`` when given."""
        if strategy not in STRATEGIES:
            raise ValueError(f"selection strategy {strategy!r}: unknown; allowed: {', '.join(STRATEGIES)}")
        live = self._live() if records is None else np.asarray(records, np.int64)
        q, n = len(task_type), len(live)
        if k <= 0 or n == 0:
            return [np.zeros(0, np.int64) for _ in range(q)]
        k = min(k, n)
        if strategy == "random":
            pick = rng.choice(n, size=k, replace=False)
            one = live[pick[np.argsort(self.stamp[live[pick]])]]
            return [one for _ in range(q)]
        if strategy == "recent":
            one = live[np.argsort(self.stamp[live])[-k:]]
            return [one for _ in range(q)]
        if strategy == "state":
            out = []
            for t in task_type:
                same = live[self.task_type[live] == t]
                if len(same) == 0:
                    out.append(np.zeros(0, np.int64))
                    continue
                order = same[np.argsort(self.reward[same], kind="stable")]       # worst ... best
                if len(order) <= k:
                    out.append(order)
                else:
                    lo, hi = k // 2, k - k // 2
                    out.append(np.concatenate([order[:lo], order[-hi:]]))
            return out
        d = self.distances(features, task_type, live, columns)                   # [Q, N]
        score = -d if strategy == "nearest" else self.reward[live][None] - tau * d
        top = np.argpartition(-score, k - 1, axis=1)[:, :k]
        out = []
        for i in range(q):
            sel = top[i][np.argsort(score[i, top[i]], kind="stable")]           # least relevant first
            out.append(live[sel])
        return out

    # ------------------------------------------------------------------ persistence (orbax)
    def state_dict(self) -> dict:
        return {"features": self.features, "task_type": self.task_type, "action": self.action,
                "reward": self.reward, "episode": self.episode, "slot": self.slot, "stamp": self.stamp,
                "n_added": np.int64(self.n_added)}

    def save(self, path: str | os.PathLike) -> None:
        """Save with orbax (atomic: a finished directory appears only when complete); overwrites."""
        import orbax.checkpoint as ocp
        ckpt = ocp.StandardCheckpointer()
        ckpt.save(os.path.abspath(os.fspath(path)), self.state_dict(), force=True)
        ckpt.wait_until_finished()

    @classmethod
    def load(cls, path: str | os.PathLike, type_penalty: float = 2.0) -> "ExperiencePool":
        import orbax.checkpoint as ocp
        path = os.path.abspath(os.fspath(path))
        if not os.path.exists(path):
            raise FileNotFoundError(f"experience pool {path!r} does not exist")
        data = ocp.StandardCheckpointer().restore(path)
        pool = cls(np.asarray(data["features"]).shape[1], len(data["task_type"]), type_penalty)
        for k in ("features", "task_type", "action", "reward", "episode", "slot", "stamp"):
            getattr(pool, k)[:] = np.asarray(data[k])
        pool.n_added = int(data["n_added"])
        return pool
