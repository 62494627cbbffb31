"""The keys under which a weights file records what the model expects and means, in its
safetensors metadata. Plain Python: the web process reads them (class names) without torch.
"""

# How the model wants its input.
META_INPUT_SIZE = "neuronscope.input_size"  # "N" or "H,W"
META_INPUT_CHANNELS = "neuronscope.input_channels"  # "1" (greyscale) or "3"
META_MEAN = "neuronscope.mean"
META_STD = "neuronscope.std"
# The names of the output classes in logit order, comma-separated (shown on the classes page).
META_CLASSES = "neuronscope.classes"
