"""The project's measurements, run from a clone with `python -m benchmarks <command>`.

- `backends/`: what each differentiation backend costs (accuracy, memory, timing,
  convergence) and the recommendation for the median model (`select`).
- `tasks/`: the paper's tasks (median estimation, class counting, molecules).
- `shared/`: reports, command-line conventions, the backend factory, training, data and the
  peer implementation timed against ours.

This package is not installed by `pip install`: it measures the project rather than
offering an API (the recommender a user calls is `eqx_agg.recommend_backend`), and a
top-level package named `benchmarks` in site-packages would shadow any other.
"""
