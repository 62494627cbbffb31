"""Selectivity indexes: perturb a neuron's receptive field in its top images and re-read it.

``engine`` does the perturbing and re-reading for any set of perturbations, ``perturbations``
defines each one, and ``indexes`` turns the responses into the numbers of docs/algorithms.md §4.
"""
