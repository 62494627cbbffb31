"""Runs: a model analysed over an image folder. Registered (``register``), computed stage by stage
(``stages``: sweep, Neuron Features, selectivity indexes and physiology), written (``write``) and
read back (``read``, torch-free; ``stored``, as analysis objects for later stages).
"""
