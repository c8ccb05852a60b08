"""The 3D CNN architectures that classify one network's subject maps.

The default, :class:`MapCNN3D`, is deliberately small: a study of this kind
has about 60 subjects, and a network with millions of weights would learn
them by heart. It is a strided convolution stem, a stack of convolution
blocks (3x3x3 convolution, batch norm, ReLU, 2x max pooling), dropout and one
linear layer giving a logit per class (over the flattened last feature map,
or after global average pooling). Every layer has a stable name
(``blocks.0.act``, ``head.fc``...) so that explanation methods (Grad-CAM and
kin) can hook the layer they need; the model's ``default_target_layer``
method names the one Grad-CAM should use.

For large cohorts, MONAI's 3D ResNet-10 and DenseNet-121 can be built by
name (MONAI is an optional dependency, imported only then).

Every model takes input of shape (batch, 1, x, y, z): one network's map
cropped to the brain mask's bounding box (:func:`rsxai.cnn.inputs.maps_to_volumes`).
"""

from __future__ import annotations

import functools
import math
from collections import OrderedDict
from collections.abc import Sequence
from numbers import Integral, Real

import torch
from torch import nn

from rsxai.exceptions import InputError

__all__ = [
    "MODEL_NAMES",
    "MapCNN3D",
    "build_model",
]

MODEL_NAMES = ("cnn3d", "monai_resnet10", "monai_densenet121")
HEADS = ("spatial", "global")
# Grad-CAM maps are upsampled from the target layer to the input; below about
# ten voxels per axis (4 cm at 4 mm) they can no longer tell neighbouring
# regions apart.
MIN_TARGET_VOXELS = 10
# Layers a default target is chosen from, for the MONAI networks (outermost stages).
_MONAI_STAGES = {
    "monai_resnet10": ("layer1", "layer2", "layer3", "layer4"),
    "monai_densenet121": tuple(f"features.denseblock{i}" for i in range(1, 5)),
}


def _is_int(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _pooled(size: int) -> int:
    # MaxPool3d(2, ceil_mode=True): a last, partial window keeps the box's edge voxels.
    return -(-size // 2)


class MapCNN3D(nn.Module):
    """A compact 3D CNN for one resting-state network's subject maps.

    ``stem`` (4x4x4 convolution with stride 2, or 3x3x3 with stride 1; batch
    norm, ReLU), then ``n_blocks`` blocks, block ``i`` being ``conv`` (3x3x3,
    ``width * 2**i`` channels), ``norm`` (BatchNorm3d), ``act`` (ReLU) and
    ``pool`` (2x2x2 max pooling, ceil mode, so that edge voxels are kept);
    then ``head``: ``head.pool`` (global average pooling; ``head="global"``
    only), ``head.flatten``, ``head.dropout`` and ``head.fc`` (one logit per
    class). Convolutions have no bias (batch norm follows) and ReLUs are not
    in place (so that hooks see each layer's own output).

    The strided stem is what makes the network fast enough to train under
    cross-validation on a laptop: at 4 mm, a full-resolution first layer costs
    several times the rest of the network on a CPU (see
    ``benchmarks/cnn_training.py``), while the maps being classified are
    smooth at that scale (dual-regression maps of smoothed data).

    Parameters
    ----------
    in_shape : tuple of 3 int
        Spatial shape (x, y, z) of the input volumes; it fixes the default
        explanation target layer, not the weights.
    n_blocks : int, default=3
        Number of convolution blocks after the stem, 1 to 6.
    width : int, default=8
        Channels of the stem and the first block; each block doubles them.
    dropout : float, default=0.3
        Dropout probability before the last layer, in [0, 1).
    n_classes : int, default=2
        Number of output logits.
    stem_stride : {2, 1}, default=2
        Stride of the stem convolution: 2 halves the resolution at once
        (4 mm input: 8 mm features), 1 keeps it (about 5x slower to train).
    head : {"spatial", "global"}, default="spatial"
        ``"spatial"``: the last block's pooled feature map is flattened into
        the linear layer, which can therefore weigh a feature differently at
        each place in the brain (a group difference is a difference at some
        place). ``"global"``: global average pooling first, as in ResNets;
        fewer weights, but place-blind beyond the receptive field, and on
        planted local effects it learned less (see the tests).

    Attributes
    ----------
    explanation_layers : list of str
        Names of the activations (``stem.act``, ``blocks.{i}.act``), shallow
        to deep; :meth:`default_target_layer` picks one.
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        n_blocks: int = 3,
        width: int = 8,
        dropout: float = 0.3,
        n_classes: int = 2,
        stem_stride: int = 2,
        head: str = "spatial",
    ):
        super().__init__()
        _check_common(in_shape, n_classes)
        problems = []
        if not (_is_int(n_blocks) and 1 <= n_blocks <= 6):
            problems.append(f"n_blocks must be an integer from 1 to 6; got {n_blocks!r}.")
        if not (_is_int(width) and 1 <= width <= 256):
            problems.append(f"width must be an integer from 1 to 256; got {width!r}.")
        if not (isinstance(dropout, Real) and not isinstance(dropout, bool) and 0 <= dropout < 1):
            problems.append(f"dropout must be a number in [0, 1); got {dropout!r}.")
        if stem_stride not in (1, 2) or isinstance(stem_stride, bool):
            problems.append(f"stem_stride must be 1 or 2; got {stem_stride!r}.")
        if head not in HEADS:
            problems.append(f"head must be one of {', '.join(map(repr, HEADS))}; got {head!r}.")
        if problems:
            raise InputError(problems)
        self.in_shape = tuple(int(n) for n in in_shape)
        self.n_blocks = n_blocks
        self.width = width
        self.n_classes = n_classes
        self.stem_stride = stem_stride
        self.head_kind = head
        if min(self.activation_shapes()[-1]) < 2:
            raise InputError(
                f"in_shape {self.in_shape} is too small for n_blocks={n_blocks} and "
                f"stem_stride={stem_stride}: the last block would see "
                f"{self.activation_shapes()[-1]} voxels; it needs at least 2 on every axis. "
                "Use fewer blocks, stem_stride=1 or a larger mask."
            )

        if stem_stride == 2:
            # A 4-wide kernel with stride 2 covers every input voxel by exactly two
            # windows per axis; a 3-wide one covers alternate voxels once and twice,
            # which printed a checkerboard on every gradient map (Odena et al. 2016)
            # that no weight randomisation removed. Padding 1 before and 2 after
            # keeps ceil(n / 2) outputs, each centred on input voxel 2i + 0.5, where
            # trilinear upsampling (align_corners=False) puts it.
            stem_layers = OrderedDict(
                pad=nn.ConstantPad3d((1, 2) * 3, 0.0),
                conv=nn.Conv3d(1, width, 4, stride=2, bias=False),
            )
        else:
            stem_layers = OrderedDict(conv=nn.Conv3d(1, width, 3, padding=1, bias=False))
        self.stem = nn.Sequential(
            OrderedDict(**stem_layers, norm=nn.BatchNorm3d(width), act=nn.ReLU())
        )
        blocks = []
        in_channels = width
        for i in range(n_blocks):
            out_channels = width * 2**i
            blocks.append(
                nn.Sequential(
                    OrderedDict(
                        conv=nn.Conv3d(in_channels, out_channels, 3, padding=1, bias=False),
                        norm=nn.BatchNorm3d(out_channels),
                        act=nn.ReLU(),
                        pool=nn.MaxPool3d(2, ceil_mode=True),
                    )
                )
            )
            in_channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        head_layers: OrderedDict[str, nn.Module] = OrderedDict()
        if head == "global":
            head_layers["pool"] = nn.AdaptiveAvgPool3d(1)
            n_features = in_channels
        else:
            n_features = in_channels * math.prod(_pooled(n) for n in self.activation_shapes()[-1])
        head_layers["flatten"] = nn.Flatten()
        head_layers["dropout"] = nn.Dropout(float(dropout))
        head_layers["fc"] = nn.Linear(n_features, n_classes)
        self.head = nn.Sequential(head_layers)

        self.explanation_layers = ["stem.act"] + [f"blocks.{i}.act" for i in range(n_blocks)]

    def activation_shapes(
        self, in_shape: Sequence[int] | None = None
    ) -> list[tuple[int, int, int]]:
        """Spatial shape of each of ``explanation_layers`` for input volumes of ``in_shape``.

        ``in_shape`` defaults to the one the model was built for.
        """
        in_shape = self.in_shape if in_shape is None else tuple(in_shape)
        # The stem keeps ceil(n / stride) voxels (see its padding).
        shape = tuple(-(-n // self.stem_stride) for n in in_shape)
        shapes = [shape]
        for _ in range(self.n_blocks):
            shapes.append(shape)  # a block's activation comes before its pooling
            shape = tuple(_pooled(n) for n in shape)
        return shapes

    def default_target_layer(self, in_shape: Sequence[int] | None = None) -> str:
        """The layer Grad-CAM should explain by default (see :func:`_deepest_fine_layer`)."""
        shapes = self.activation_shapes(in_shape)
        return _deepest_fine_layer(dict(zip(self.explanation_layers, shapes, strict=True)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape (batch, n_classes) for input of shape (batch, 1, x, y, z)."""
        return self.head(self.blocks(self.stem(x)))


def _check_common(in_shape, n_classes) -> None:
    problems = []
    if not (
        isinstance(in_shape, Sequence)
        and len(in_shape) == 3
        and all(_is_int(n) and n >= 1 for n in in_shape)
    ):
        problems.append(
            "in_shape must be 3 positive integers (x, y, z), the input volumes' shape; "
            f"got {in_shape!r}."
        )
    if not (_is_int(n_classes) and n_classes >= 2):
        problems.append(f"n_classes must be an integer >= 2; got {n_classes!r}.")
    if problems:
        raise InputError(problems)


def _build_monai(name: str, n_classes: int, dropout: float) -> nn.Module:
    try:
        # Optional: MONAI is a development extra.
        from monai.networks import nets
    except ImportError as error:
        raise ImportError(
            f"model {name!r} needs MONAI, which is not installed; install it with "
            "`pip install monai`, or use the built-in model 'cnn3d'."
        ) from error
    # ReLUs not in place, so that explanation hooks see each layer's own output.
    act = ("relu", {"inplace": False})
    if name == "monai_resnet10":
        model = nets.resnet10(spatial_dims=3, n_input_channels=1, num_classes=n_classes, act=act)
    else:
        model = nets.DenseNet121(
            spatial_dims=3, in_channels=1, out_channels=n_classes, act=act, dropout_prob=dropout
        )
    # MONAI's ResNet blocks ignore ``act`` and keep in-place ReLUs of their own.
    for module in model.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
    model.explanation_layers = list(_MONAI_STAGES[name])
    # The attribute rsxai.explain.gradcam reads: a callable of the input's spatial shape.
    model.default_target_layer = functools.partial(_monai_target_layer, model)
    return model


def _monai_target_layer(model: nn.Module, in_shape: Sequence[int]) -> str:
    return _deepest_fine_layer(_output_shapes(model, model.explanation_layers, tuple(in_shape)))


def build_model(
    name: str = "cnn3d",
    *,
    in_shape: Sequence[int],
    n_blocks: int = 3,
    width: int = 8,
    dropout: float = 0.3,
    n_classes: int = 2,
    stem_stride: int = 2,
    head: str = "spatial",
) -> nn.Module:
    """Build a classification network by name, with freshly initialised weights.

    Weights are drawn from PyTorch's global random generator: seed it (see
    :func:`rsxai.cnn.runtime.reproducible`) for a reproducible model.

    Parameters
    ----------
    name : {"cnn3d", "monai_resnet10", "monai_densenet121"}, default="cnn3d"
        ``"cnn3d"``: :class:`MapCNN3D` (tens of thousands of weights, for
        cohorts of tens to hundreds). ``"monai_resnet10"`` (14 M weights) and
        ``"monai_densenet121"`` (11 M): MONAI's standard 3D networks, for large
        cohorts only; they ignore ``n_blocks``, ``width``, ``stem_stride`` and
        ``head`` (ResNet-10 also ``dropout``) and need MONAI installed.
    in_shape : tuple of 3 int
        Spatial shape (x, y, z) of the input volumes.
    n_blocks, width, dropout, stem_stride, head
        See :class:`MapCNN3D`.
    n_classes : int, default=2
        Number of output logits.

    Returns
    -------
    model : torch.nn.Module
        In training mode, on the CPU, with ``explanation_layers`` (candidate
        layer names, shallow to deep) and ``default_target_layer(in_shape)``
        (the name of the default Grad-CAM layer for inputs of that spatial
        shape, read by :func:`rsxai.explain.gradcam.default_target_layer`).
    """
    if name not in MODEL_NAMES:
        raise InputError(
            f"model name must be one of {', '.join(map(repr, MODEL_NAMES))}; got {name!r}."
        )
    if name == "cnn3d":
        return MapCNN3D(
            in_shape,
            n_blocks=n_blocks,
            width=width,
            dropout=dropout,
            n_classes=n_classes,
            stem_stride=stem_stride,
            head=head,
        )
    _check_common(in_shape, n_classes)
    return _build_monai(name, n_classes, float(dropout))


def _output_shapes(model: nn.Module, names: Sequence[str], in_shape) -> dict[str, tuple]:
    """Spatial output shapes of the named submodules, from one forward pass of zeros."""
    modules = dict(model.named_modules())
    shapes: dict[str, tuple] = {}
    handles = [
        modules[name].register_forward_hook(
            lambda _module, _inputs, output, name=name: shapes.__setitem__(
                name, tuple(output.shape[2:])
            )
        )
        for name in names
    ]
    was_training = model.training
    model.eval()  # batch norm must not update its running statistics
    try:
        device = next(model.parameters()).device
        with torch.no_grad():
            model(torch.zeros((1, 1, *in_shape), device=device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return shapes


def _deepest_fine_layer(shapes: dict[str, tuple[int, ...]]) -> str:
    """The default Grad-CAM layer among candidates given shallow to deep with their shapes.

    The deepest whose output is at least 10 voxels on every spatial axis
    (deep enough to be class-specific, fine enough to localise); when none
    is, the deepest of those at the finest resolution there is.
    """
    names = list(shapes)
    smallest_axis = {name: min(shapes[name]) for name in names}
    deep_enough = [name for name in names if smallest_axis[name] >= MIN_TARGET_VOXELS]
    if deep_enough:
        return deep_enough[-1]
    # Small inputs: the deepest layer at the finest resolution there is.
    finest = max(smallest_axis.values())
    return [name for name in names if smallest_axis[name] == finest][-1]
