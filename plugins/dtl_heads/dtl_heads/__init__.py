"""desktop_tl plugin: the classifier heads put on top of a backbone's features.

``linear``: dropout then one Linear layer, the classic transfer-learning head.
``mlp``: hidden Linear layers with an activation and dropout, then the output Linear.
torch is imported only when a head is built.
"""

from __future__ import annotations

from desktop_tl.plugin import HeadOption, HeadType, hookimpl

from .heads import ACTIVATIONS, build_linear, build_mlp

DTL_API_VERSION = "1.0"

_DROPOUT_HELP = "Probability of zeroing a feature during training (0 to just under 1)."


@hookimpl
def dtl_head_types() -> list[HeadType]:
    return [
        HeadType(
            id="linear",
            display_name="Linear",
            build=build_linear,
            options=(
                HeadOption(
                    "dropout", "float", 0.0, label="Dropout", help=_DROPOUT_HELP, minimum=0.0, maximum=0.99
                ),
            ),
            description="One Linear layer from the features to the classes (optionally after "
            "dropout): the classic transfer-learning head.",
        ),
        HeadType(
            id="mlp",
            display_name="MLP",
            build=build_mlp,
            options=(
                HeadOption(
                    "hidden_sizes",
                    "int_list",
                    [256],
                    label="Hidden sizes",
                    help="Width of each hidden layer, e.g. 512, 256.",
                    minimum=1,
                ),
                HeadOption(
                    "dropout", "float", 0.2, label="Dropout", help=_DROPOUT_HELP, minimum=0.0, maximum=0.99
                ),
                HeadOption(
                    "activation",
                    "choice",
                    "relu",
                    label="Activation",
                    help="Non-linearity after each hidden layer.",
                    choices=tuple(ACTIVATIONS),
                ),
            ),
            description="Hidden Linear layers with an activation and dropout, then the "
            "output layer: more capacity when the new classes differ from ImageNet's.",
        ),
    ]
