"""Named imbalance methods for the `experiment` grid (issue 6): name -> `train.*` overrides.

Each loss / weighting method is one single-phase run per seed on the ORIGINAL distribution
(sampler `none`), i.e. the paper's baseline with the method's loss or class weights. The head
re-balancing methods (`posthoc_la`, `tau_norm`, `crt`, see `HEAD_METHODS`) change only the head of
a trained model, so in `experiment` they branch from the same seed's baseline run
(`training.rebalance_run`): no extra training, and the comparison with the baseline is paired
(same backbone). Each still gets a complete run folder whose `lineage.json` names that baseline.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping, Sequence

from serengeti_tf.errors import UserError

METHODS: Mapping[str, Mapping[str, Any]] = MappingProxyType({
    "cw_inverse": {"class_weighting": "inverse"},
    "cw_effective": {"class_weighting": "effective_number"},
    "focal": {"loss": "focal"},
    "focal_cw": {"loss": "focal", "class_weighting": "effective_number"},
    "balanced_softmax": {"loss": "balanced_softmax"},
    "logit_adjusted": {"loss": "logit_adjusted"},
    "posthoc_la": {"head_rebalancing": "posthoc_logit_adjustment"},
    "tau_norm": {"head_rebalancing": "tau_norm"},
    "crt": {"head_rebalancing": "crt"},
})

# Methods that only re-balance the head of a trained baseline (they branch from it in `experiment`).
HEAD_METHODS = frozenset(name for name, overrides in METHODS.items() if set(overrides) == {"head_rebalancing"})

DESCRIPTIONS: Mapping[str, str] = MappingProxyType({
    "cw_inverse": "cross-entropy weighted by inverse class frequency",
    "cw_effective": "cross-entropy weighted by the effective number of samples (Cui et al. 2019)",
    "focal": "focal loss (train.focal_gamma)",
    "focal_cw": "focal loss with effective-number class weights",
    "balanced_softmax": "balanced softmax (Ren et al. 2020): logits + log prior in the loss",
    "logit_adjusted": "logit-adjusted loss (Menon et al. 2021, train.logit_adjust_tau)",
    "posthoc_la": "the baseline's model, then post-hoc logit adjustment (tau swept on val)",
    "tau_norm": "the baseline's model, then tau-normalised head weights (tau swept on val)",
    "crt": "the baseline's model, then cRT: head retrained with class-balanced sampling, backbone frozen",
})


def check_methods(names: Sequence[str]) -> list[str]:
    """The names, checked: known and distinct; UserError naming the bad one and the known ones."""
    names = list(names)
    for name in names:
        if name not in METHODS:
            raise UserError(f"config: unknown method {name!r} in experiment.methods; known: {', '.join(METHODS)}")
    if len(set(names)) != len(names):
        raise UserError(f"config: experiment.methods must be distinct, got {names}")
    return names


def method_overrides(name: str) -> dict[str, Any]:
    """The `train.*` settings of one method (a fresh dict)."""
    check_methods([name])
    return dict(METHODS[name])
