"""Campaign loops: Bayesian optimization and active learning over oracles."""
