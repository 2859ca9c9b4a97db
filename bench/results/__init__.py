"""Histograms, the recorder and the run directory: the contract with the analyzer."""
