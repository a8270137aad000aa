"""Hyper-parameter search on the member axis: Optuna's ask-and-tell, each population of trials
trained as a sweep (`engine.run_search`), the best confirmed over fresh seeds (`confirm`). Optuna is
the optional `search` extra; it is imported only when a search runs."""
