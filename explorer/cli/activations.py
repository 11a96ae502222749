"""``python -m explorer activations``: the top channels of one layer as a grid PNG, with the
layer's shape, receptive field and channel statistics as JSON (:mod:`explorer.nets.layers`).
"""

from __future__ import annotations

import argparse

from ..activations import views
from ..core import choices, recipes
from ..core.settings import check_int
from ..nets import registry
from ..nets.layers import layer_activations, layer_info
from ..io import images
from ..nets import memory
from ..io import outputs
from . import common

__all__ = ["run"]


def run(args: argparse.Namespace) -> int:
    """Activations: the channel grid PNG and, with ``--json``, the layer's statistics.

    Returns:
        the exit status.

    Raises:
        explorer.cli.common.CliError and the errors :func:`explorer.cli.commands.run` turns into one line.
    """
    out = common.png_out(args, "activations.png")
    check_int("--top", args.top, 1, 1024)
    check_int("--size", args.size, 32, 4096)
    common.check_apart(args, out, inputs=[("image", common.file_ref(args.image))])
    name = args.model or common.default_network(args, choices.MODEL_NAMES[0], choices.MODEL_NAMES)
    layer = args.layer or registry.get_spec(name).activation_layer
    common.check_layers(name, [layer])  # before the image is decoded and the weights are loaded
    li = common.load_ref(args.image, "image")
    model = common.load_net(args, name)
    x = images.to_tensor(images.resize_long_side(li.image, args.size))
    # the layer's forward pass, and the whole network's for the predictions (trained weights with a
    # classifier): refused up front (MemoryEstimateError, one line) when either would not fit
    predicts = model.has_classifier and not model.weights.untrained
    for layers in ([layer], [model.spec.logits_layer]) if predicts else ([layer],):
        memory.check_fits(model, x.shape[-2], x.shape[-1], kind="activations", device=model.device,
                          backward=False, layers=layers)
    info = layer_info(model.name, layer, max(x.shape[-2:]))
    acts = layer_activations(model, x, layer)
    if acts.ndim != 3:
        raise common.CliError(f"{layer} has no spatial maps (shape {acts.shape}); pick a convolutional layer")
    stats = views.channel_stats(acts)
    top = views.top_channels(acts, args.top, by=args.by)
    settings = {"model": model.name, "layer": layer, "top": args.top, "by": args.by, "size": args.size}
    report = {
        **recipes.run_info("activations", settings, model.weights, model.device, "fp32"),
        "image": args.image, "model": model.name, "layer": layer, "weights": model.weights.kind,
        "weights_label": model.weights.label, "input_hw": list(x.shape[-2:]),
        "shape": list(acts.shape), "receptive_field": info.receptive_field, "stride": info.stride,
        "params": info.params, "params_total": info.params_total, "sparsity": stats.sparsity,
        "top_channels": [{"channel": int(c), "mean": float(stats.mean[c]), "max": float(stats.max[c])} for c in top],
        "channel_mean": [float(v) for v in stats.mean],
        "predictions": views.top_predictions(model, x),
    }
    grid = views.channel_grid(acts, top)
    common.write_results(args, [
        *([(args.json, lambda: outputs.write_json_atomic(report, args.json))] if args.json else []),
        (str(out), lambda: outputs.save_png_atomic(grid, out, pnginfo={"weights": model.weights.label,
                                                                       "layer": f"{model.name} {layer}"}))])
    common.say(f"wrote {out}: top {len(top)} of {acts.shape[0]} channels of {model.name} {layer} "
         f"({acts.shape[1]}x{acts.shape[2]}, receptive field {info.receptive_field} px, stride {info.stride}); "
         f"sparsity {stats.sparsity:.1%}" + (f"; stats in {args.json}" if args.json else ""))
    return 0
