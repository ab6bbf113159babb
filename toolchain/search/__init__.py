"""RightTrain search (`toolchain search`): network structure, training-data fraction and resources
chosen jointly to reach a target accuracy with the least training energy, on Ray Tune.

    space.py        the space file: parsing, validation, candidates
    sampler.py      Optuna define-by-run sampling of a candidate
    constraints.py  device constraints (the export's memory predictor, the planner's figures)
    energy.py       measured (RAPL) or labelled estimated (CPU seconds x per-thread power) energy
    kpredict.py     the K predictor (epochs to the target) and its baselines; curves.json, its corpus
    corpus.py       recording learning curves for the corpus
    trial.py        one trial (a real training run), inside a Ray Tune worker
    tuneparts.py    Tune pieces: constrained searcher, K-predictor stopper, progress, ledger (imports ray)
    driver.py       run_search: the whole search, resumable
    report.py       trials table, pareto.png, best.toml, report.md
"""
