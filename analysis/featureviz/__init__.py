"""Feature visualisation: images optimised to excite a neuron, a class or a layer
(docs/algorithms.md §7).

Split the way Lucent splits ``optvis``, one concept per module::

    from analysis.featureviz import objectives, param, render, transform

    images = param.fourier_image(1, 128)
    result = render.render(model, objectives.channel("layer3", 7)
                           - 1e-3 * objectives.total_variation(), images, input_spec)

- ``param``: how an image is represented (Fourier with 1/f decay and colour decorrelation, pixel,
  or starting from a real image);
- ``transform``: the robustness warp, one fused affine transform per image;
- ``objectives``: composable per-image scores (channel, neuron, DeepDream, class logit,
  direction, diversity, penalties);
- ``render``: the gradient-ascent loop;
- ``genetic``: the gradient-free XDREAM-style search;
- ``dream``: DeepDream with octaves from an image;
- ``units``: whole layers or sets of classes in batches, as the worker renders them.
"""
