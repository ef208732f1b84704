"""Named imbalance methods for the `experiment` grid (issue 6): name -> `train.*` overrides.

Each loss / weighting method is one single-phase run per seed on the ORIGINAL distribution
(sampler `none`), i.e. the paper's baseline with the method's loss or class weights. The head
re-balancing methods (`posthoc_la`, `tau_norm`, `crt`, see `head_only`) change only the head of
a trained model, so in `experiment` they branch from the same seed's baseline run
(`training.rebalance_run`): no extra training, and the comparison with the baseline is paired
(same backbone). Each still gets a complete run folder whose `lineage.json` names that baseline.
Which recipe produces a method's runs is the recipes' choice (`recipes.method_recipe`: `method` for
a loss or weighting, `rebalance` for a head-only method).

Each method is one `ImbalanceMethod` registered in `choices.IMBALANCE_METHODS` below (the names
`experiment.methods` takes); `config.validate` checks the names.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping

from serengeti_tf.choices import IMBALANCE_METHODS


@dataclass(frozen=True)
class ImbalanceMethod:
    """A method's `train.*` settings and a one-line description for reports and help."""

    overrides: Mapping[str, Any]
    description: str

    @property
    def head_only(self) -> bool:
        """True when the method only re-balances the head of a trained model."""
        return set(self.overrides) == {"head_rebalancing"}


def _register(name: str, description: str, **overrides: Any) -> None:
    IMBALANCE_METHODS.register(name, ImbalanceMethod(MappingProxyType(overrides), description), help=description)


_register("cw_inverse", "cross-entropy weighted by inverse class frequency", class_weighting="inverse")
_register("cw_effective", "cross-entropy weighted by the effective number of samples (Cui et al. 2019)",
          class_weighting="effective_number")
_register("focal", "focal loss (train.focal_gamma)", loss="focal")
_register("focal_cw", "focal loss with effective-number class weights", loss="focal",
          class_weighting="effective_number")
_register("balanced_softmax", "balanced softmax (Ren et al. 2020): logits + log prior in the loss",
          loss="balanced_softmax")
_register("logit_adjusted", "logit-adjusted loss (Menon et al. 2021, train.logit_adjust_tau)", loss="logit_adjusted")
_register("posthoc_la", "the baseline's model, then post-hoc logit adjustment (tau swept on val)",
          head_rebalancing="posthoc_logit_adjustment")
_register("tau_norm", "the baseline's model, then tau-normalised head weights (tau swept on val)",
          head_rebalancing="tau_norm")
_register("crt", "the baseline's model, then cRT: head retrained with class-balanced sampling, backbone frozen",
          head_rebalancing="crt")


def head_only(name: str) -> bool:
    """True when method `name` only re-balances the head (it branches from the seed's baseline run)."""
    return IMBALANCE_METHODS.lookup(name).head_only


def method_overrides(name: str) -> dict[str, Any]:
    """The `train.*` settings of one method (a fresh dict)."""
    return dict(IMBALANCE_METHODS.lookup(name).overrides)
