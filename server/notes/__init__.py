"""A lab's notes on its neurons: a short label and free text per neuron, every version kept."""
