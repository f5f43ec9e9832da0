"""The offline evaluation harness: protocols, metrics, baselines, reports (``llmrec eval``)."""
