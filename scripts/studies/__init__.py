"""Studies: the Monte Carlo runner, PPO training, the scenario table, ICL's results and regimes, the oracle's gap."""
