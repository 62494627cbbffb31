"""neuronscope's compute library: torch, numpy and pillow only, no web, no database.

Usable on its own from a notebook::

    from analysis.models import load_model
    from analysis.data import scan_image_folder
    from analysis.layers import list_layers
    from analysis.sweep import sweep

    loaded = load_model("torchvision:vgg16", weights="vgg16.pth")
    folder = scan_image_folder("~/images")
    result = sweep(loaded.module, folder, ["features.29"], loaded.input, k=100)
"""
