"""Decomposition (docs/algorithms.md §6): an image described by Neuron Features (``image``), and a
neuron composed of the neurons of a shallower layer (``composition``, which Nefesi's papers call
hierarchical decomposition). Both choose neurons and their places the same way (``placement``).
"""
