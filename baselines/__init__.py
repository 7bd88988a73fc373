"""Baseline decision makers: heuristics, the exhaustive-search oracle, and the PPO actor-critic."""

from .heuristics import (HEURISTICS, estimate_rewards, greedy_policy, greedy_sequential_policy, heuristic_choice,
                         heuristic_policy, random_policy, single_site, type_table_policy)
from .oracle import oracle_policy

__all__ = ["HEURISTICS", "estimate_rewards", "greedy_policy", "greedy_sequential_policy", "heuristic_choice",
           "heuristic_policy", "oracle_policy", "random_policy", "single_site", "type_table_policy"]
