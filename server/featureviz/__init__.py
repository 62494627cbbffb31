"""Feature visualisations of a run's model: rendered and stored per batch (``render``), read back
(``read``, torch-free).
"""
