"""CLI: ``python -m spatial_restore.analysis matrix|erf ... -o FILE.png``.

matrix  the SASF layer's matrix M (y = M·u) beside the Mamba-only M, channel-averaged |M| or one channel;
        default: a seeded random layer on an 8×8 image; --model classifier|denoiser takes a layer of a model.
erf     effective receptive fields of the classifier's stages or of the denoiser's output.
"""

from __future__ import annotations

import argparse
import sys

import torch

from .erf import (
    AnalysisError,
    classifier_stages,
    effective_receptive_field,
    imagenet_normalize,
    load_classifier,
    load_denoiser,
    load_images,
)
from .figures import plot_erfs, plot_matrices
from .matrix import autograd_matrix, core_inputs, layer_input, random_layer, sasf_layers, sasf_matrix, without_fusion

DEFAULT_MODEL_SIZE = {"classifier": 32, "denoiser": 8}  # the classifier's stem has stride 4


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--variant", default="T", help="classifier variant T|S|B (default T)")
    p.add_argument("--checkpoint", help="classifier: official .pth (key 'model'); denoiser: a shipped name or "
                   "weights path that spatial_restore.weights.load_model accepts (default: the shipped 'default')")
    p.add_argument("--random-init", action="store_true", help="denoiser: an untrained --preset U-Net")
    p.add_argument("--preset", default="tiny", help="denoiser U-Net preset for --random-init (default tiny)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", required=True, help="PNG file to write")


def _load(args: argparse.Namespace) -> torch.nn.Module:
    if args.model == "classifier":
        return load_classifier(args.variant, args.checkpoint)
    return load_denoiser(args.checkpoint or "default", args.random_init, args.preset)


def _model_inputs(args: argparse.Namespace, paths: list[str], height: int, width: int, count: int) -> torch.Tensor:
    """Natural images when given, else seeded uniform noise in [0, 1]; normalised for the classifier."""
    if paths:
        if height != width:
            raise AnalysisError("natural images are centre-cropped to a square: give a square size")
        images = load_images(paths, height)
    else:
        images = torch.rand(count, 3, height, width, generator=torch.Generator().manual_seed(args.seed))
    return imagenet_normalize(images) if args.model == "classifier" else images


def cmd_matrix(args: argparse.Namespace) -> str:
    if args.model == "random":
        height, width = args.size or (8, 8)
        layer = random_layer(args.d_model, args.seed)
        x = torch.randn(1, height, width, args.d_model, dtype=torch.float64, generator=torch.Generator().manual_seed(args.seed))
        source = f"random SASF layer (d_model={args.d_model}, seed {args.seed})"
    else:
        model = _load(args).double()
        layers = dict(sasf_layers(model))
        name = args.layer or next(iter(layers), None)
        if name not in layers:
            raise AnalysisError(f"no SASF layer {name!r}; the model has: {', '.join(layers) or 'none'}")
        layer = layers[name]
        if layer.scan_direction != "row":  # the closed form below is the row-major scan's
            row_layers = [n for n, m in layers.items() if m.scan_direction == "row"]
            raise AnalysisError(f"layer {name} scans {layer.scan_direction}; the matrix view covers "
                                f"row-major layers only, here: {', '.join(row_layers) or 'none'}")
        size = args.size or (DEFAULT_MODEL_SIZE[args.model],) * 2
        images = _model_inputs(args, [args.image] if args.image else [], *size, count=1)
        x = layer_input(model, layer, images.double())
        source = f"{args.model} layer {name}, {size[0]}×{size[1]} input"
    inputs = core_inputs(layer, x)
    fused, mamba = sasf_matrix(inputs), sasf_matrix(without_fusion(inputs))
    error = (fused - autograd_matrix(inputs)).abs().max().item() / fused.abs().max().item()
    # The skip D·u is the same diagonal in both and would swamp the colour scale: show M − D·I.
    skip = inputs.Dskip.to(fused.dtype)[:, None, None] * torch.eye(fused.shape[-1], dtype=fused.dtype)
    fused, mamba = (fused[0] - skip).abs(), (mamba[0] - skip).abs()
    if args.channel is None:
        shown_fused, shown_mamba, which = fused.mean(0), mamba.mean(0), "channel-averaged"
    else:
        shown_fused, shown_mamba, which = fused[args.channel], mamba[args.channel], f"channel {args.channel}"
    title = f"{source}\n{inputs.height}×{inputs.width} state grid, {which}, M − D·I (skip left out)"
    plot_matrices(shown_fused, shown_mamba, inputs.height, inputs.width, args.output, title)
    above = shown_fused.triu(1).sum().item() / shown_fused.sum().item()
    return (f"{title}\n  closed form vs autograd Jacobian: max rel. error {error:.2e}\n"
            f"  share of |M| above the diagonal (reads ahead in raster order): {above:.1%}")  # fmt: skip


def cmd_erf(args: argparse.Namespace) -> str:
    model = _load(args)
    images = _model_inputs(args, args.images, args.size, args.size, args.samples)
    what = f"{len(args.images)} images" if args.images else f"{args.samples} random inputs"
    if args.model == "classifier":
        erfs = effective_receptive_field(classifier_stages(model, args.stages), images)
        panels = [(f"stage {s} centre ({model.dims[s]} ch)", erf) for s, erf in zip(args.stages, erfs)]
        name = f"Spatial-Mamba-{args.variant.upper()} classifier" + ("" if args.checkpoint else " (random init)")
    else:
        panels = [("output centre pixel", effective_receptive_field(lambda x: [model(x)], images)[0])]
        name = f"untrained {args.preset!r} U-Net" if args.random_init else f"denoiser {args.checkpoint or 'default'}"
    title = f"ERF of {name}\n{args.size}×{args.size} input, {what}"
    plot_erfs(panels, args.output, title)
    return title


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m spatial_restore.analysis", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("matrix", help="heat map of the SASF layer's matrix M beside Mamba's")
    p.add_argument("--model", choices=("random", "classifier", "denoiser"), default="random")
    p.add_argument("--layer", help="module name of the SASF layer (default: the model's first)")
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"),
                   help="random: the layer's grid (default 8 8); models: the input image (classifier 32 32, denoiser 8 8)")
    p.add_argument("--image", help="models: a natural image instead of noise")
    p.add_argument("--channel", type=int, help="show this channel instead of the channel average of |M|")
    p.add_argument("--d-model", type=int, default=4, help="random layer width (channels inside: 2×)")
    _add_model_args(p)
    p.set_defaults(run=cmd_matrix)
    p = sub.add_parser("erf", help="effective receptive field maps of a whole network")
    p.add_argument("--model", choices=("classifier", "denoiser"), required=True)
    p.add_argument("--stages", type=int, nargs="+", default=[0, 1, 2, 3], help="classifier stages to show")
    p.add_argument("--size", type=int, default=None, help="input side (default: classifier 224, denoiser 64)")
    p.add_argument("--samples", type=int, default=8, help="random inputs to average over")
    p.add_argument("--images", nargs="+", default=[], help="natural images to average over instead")
    _add_model_args(p)
    p.set_defaults(run=cmd_erf)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "erf" and args.size is None:
        args.size = 224 if args.model == "classifier" else 64
    torch.manual_seed(args.seed)  # random-init models are reproducible too
    try:
        print(args.run(args))
    except AnalysisError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
