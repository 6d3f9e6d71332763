"""ZFNet (Zeiler & Fergus 2013, "Visualizing and Understanding Convolutional Networks", arXiv:1311.2901, Fig. 3).

AlexNet with the changes the paper's visualizations suggested (Sec. 4.1): conv1 7x7 at stride 2 instead of
11x11 at stride 4, and the dense connections of a one-GPU model (no groups). Following the lecture, conv3/4/5
have 512/1024/512 filters, the larger model of the paper's Table 2 (Fig. 3 itself draws 384/384/256).

Fig. 3's map sizes at a 224 input are 110 (conv1), 55 (pool1), 26 (conv2), 13 (pool2), 13, 13, 13 (conv3-5) and
6 (pool5). They come out with conv1 padded by 1, conv2 unpadded, and pools that round up (Caffe's convention;
rounding down gives 54 and 12). Each layer is conv -> ReLU -> max-pool -> contrast normalization across maps.
Built by AlexNet's loop (cnnlab.models.alexnet) from its own table.
"""

from __future__ import annotations

from cnnlab.models.alexnet import AlexNet, AlexNetSpec, ConvRow
from cnnlab.models.base import Family, Paper, Published

FIG3: tuple[ConvRow, ...] = (
    # out, k, s, p, groups, after ReLU
    (96, 7, 2, 1, 1, ("pool", "lrn")),  # 224 -> 110 -> 55
    (256, 5, 2, 0, 1, ("pool", "lrn")),  # 55 -> 26 -> 13
    (512, 3, 1, 1, 1, ()),  # Table 2: 512 (Fig. 3: 384)
    (1024, 3, 1, 1, 1, ()),  # Table 2: 1024 (Fig. 3: 384)
    (512, 3, 1, 1, 1, ("pool",)),  # Table 2: 512 (Fig. 3: 256); 13 -> 6
)

SPECS = {
    # DEVIATION: the paper gives no constants for its contrast normalization; AlexNet's LRN ones are used.
    "zfnet": AlexNetSpec(FIG3, pool_ceil=True, resolution=224),
}

FAMILY = Family(
    name="zfnet",
    paper=Paper(
        "Visualizing and Understanding Convolutional Networks",
        "Zeiler, Fergus",
        2013,
        arxiv="1311.2901",
        table="Fig. 3; Table 2 (layers 3, 4, 5 with 512, 1024, 512 maps)",
    ),
    specs=SPECS,
    build=lambda spec, num_classes, in_chans: AlexNet(spec, num_classes, in_chans),
    input_size=lambda name, spec: (3, spec.resolution, spec.resolution),
    published={"zfnet": Published(source="feature maps 110-55-26-13-13-13-13-6 at 224 (Zeiler & Fergus 2013, Fig. 3)")},
    deviations={
        "zfnet": (
            "contrast normalization as AlexNet's LRN (k=2, n=5, alpha=1e-4, beta=0.75); the paper gives no constants",
        )
    },
)
