"""Named imbalance methods for the `experiment` grid (issue 6): name -> `train.*` overrides.

Each method is one single-phase run per seed on the ORIGINAL distribution (sampler `none`), i.e.
the paper's baseline with the method's loss / weighting / head re-balancing. The head
re-balancing methods (`posthoc_la`, `tau_norm`, `crt`) train their own baseline-configured model
and re-balance its head at the end (`training._rebalance`), so every run folder is a complete,
self-describing run (no copied models; `lineage.json` says what trained it).
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

DESCRIPTIONS: Mapping[str, str] = MappingProxyType({
    "cw_inverse": "cross-entropy weighted by inverse class frequency",
    "cw_effective": "cross-entropy weighted by the effective number of samples (Cui et al. 2019)",
    "focal": "focal loss (train.focal_gamma)",
    "focal_cw": "focal loss with effective-number class weights",
    "balanced_softmax": "balanced softmax (Ren et al. 2020): logits + log prior in the loss",
    "logit_adjusted": "logit-adjusted loss (Menon et al. 2021, train.logit_adjust_tau)",
    "posthoc_la": "baseline training, then post-hoc logit adjustment (tau swept on val)",
    "tau_norm": "baseline training, then tau-normalised head weights (tau swept on val)",
    "crt": "baseline training, then cRT: head retrained with class-balanced sampling, backbone frozen",
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
