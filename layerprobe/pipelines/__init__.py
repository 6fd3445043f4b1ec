"""pipelines: whole studies composed from the stages — ``demo`` (pre-train a ladder, extract,
probe, fit, report) and ``scan`` (one model, every layer, every task, one report)."""
