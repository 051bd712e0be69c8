"""Campaign loops: Bayesian optimization and active learning over oracles.

Public pieces (imported from their modules, so ``import loops`` stays light):

* :class:`loops.config.CampaignConfig`, :func:`loops.config.load_config` (TOML + pydantic);
* :class:`loops.engine.Campaign` (``run()``, ``Campaign.resume(run_dir)``), stopping
  conditions ``CallsBudget | CostBudget | WallTimeBudget | TargetError``;
* :func:`loops.acquisition.propose` (qLogNEI, qLogNEHVI, qMFKG, qMFMES, qMFLogEI, qNIPV,
  max_variance, sobol);
* :func:`loops.models.fit_model` (model factory by name);
* :class:`loops.store.RunStore` (SQLite run store), :class:`loops.tracking.Tracker` (MLflow);
* :data:`loops.registry.ORACLES` (oracle names for configs).
"""
