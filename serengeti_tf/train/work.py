"""The unit of work a run costs: image passes (what the grid ETA and the demo's budget count).

The unit is one training image (forward + backward pass through the model). A forward-only image
(validation after every epoch, a feature pass, the test evaluation) costs `FORWARD_COST` of that.
Each recipe (`recipes.py`) says what its run costs in these units; `progress.py` turns them into an ETA.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

# A ResNet forward pass is about a third of forward + backward (the backward pass costs ~2 forwards).
FORWARD_COST = 1 / 3


@dataclass(frozen=True)
class RunWork:
    """One run's work: `epochs` epochs of `train_images` training and `val_images` validation images,
    plus `once_forward` forward-only images done once (feature pass, test evaluation)."""

    epochs: int
    train_images: int
    val_images: int
    once_forward: int

    @property
    def epoch_units(self) -> float:
        return self.train_images + FORWARD_COST * self.val_images

    def units(self, epochs: Optional[int] = None) -> float:
        """Units of the whole run (or of a run that trains only `epochs` epochs)."""
        epochs = self.epochs if epochs is None else epochs
        return epochs * self.epoch_units + FORWARD_COST * self.once_forward
