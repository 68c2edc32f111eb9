"""History pool of generated images (Shrivastava et al. 2017), as used by CycleGAN.

The discriminators see a mix of current and past fakes, which damps oscillation. The pool
owns its random generator, and its contents and RNG state go into checkpoints so that a
resumed run makes the same choices.
"""

from __future__ import annotations

from typing import Any

import torch


class ImagePool:
    """A buffer of up to ``size`` past generated images.

    ``query(images)`` returns a batch of the same shape: while the pool fills, the new images
    themselves; afterwards, for each image, with probability 1/2 a stored image (which the new
    one replaces) and otherwise the new image.
    """

    def __init__(self, size: int, seed: int = 0) -> None:
        if size < 0:
            raise ValueError(f"pool size must be >= 0, got {size}")
        self.size = size
        self.images: list[torch.Tensor] = []
        self.generator = torch.Generator().manual_seed(seed)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        """Args: images (B, C, H, W), detached. Returns (B, C, H, W)."""
        if self.size == 0:
            return images
        out = []
        for image in images.detach():
            image = image.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
                continue
            # draws on CPU from our own generator: identical across devices and on resume
            if torch.rand((), generator=self.generator).item() > 0.5:
                idx = int(torch.randint(0, self.size, (), generator=self.generator).item())
                stored = self.images[idx]
                if stored.shape != image.shape:  # sizes may vary with preprocess "none"
                    out.append(image)
                    continue
                self.images[idx] = image.clone()
                out.append(stored.to(image.device))
            else:
                out.append(image)
        return torch.cat(out, dim=0)

    def state_dict(self) -> dict[str, Any]:
        return {"size": self.size, "images": [img.cpu() for img in self.images], "rng": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any], device: torch.device | str = "cpu") -> None:
        if int(state["size"]) != self.size:
            # a different pool size after resume: keep what fits
            state = {**state, "images": state["images"][: self.size]}
        self.images = [img.to(device) for img in state["images"]]
        self.generator.set_state(state["rng"])
