"""Run directories -> merged histograms, summaries, verdicts, comparisons."""
