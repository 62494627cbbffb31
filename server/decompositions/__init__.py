"""Images decomposed into a run's Neuron Features (``image``), neurons composed of a shallower
layer's neurons (``composition``), and both read back (``read``, torch-free).
"""
