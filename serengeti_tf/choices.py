"""Every kind of named choice, with the module that registers its names (its owner).

Config validation, the CLI's choices and help, and report ordering read these registries; the
code that acts on a setting calls `lookup`. To add a choice, register its builder in the owner:

    kind (config key)                   owner: what a builder is
    SAMPLERS (sampler.name)             data/sampling.py: (counts, SamplerConfig) -> per-class targets
    LOSSES (train.loss)                 train/loss_choices.py: (TrainConfig, counts, class weights or None)
                                        -> Keras loss
    CLASS_WEIGHTINGS (train.class_weighting)
                                        train/loss_choices.py: (counts of the classes with images, beta)
                                        -> their raw weights, or None for no weighting
    HEAD_REBALANCINGS (train.head_rebalancing)
                                        train/head_choices.py: (TrainConfig, HeadInputs) -> re-balanced head
                                        or None to leave it
    SOURCE_FORMATS (data.source_format, besides `auto`)
                                        data/sources/__init__.py: (metadata paths, image root) -> rows
    MODELS (model.name)                 models/choices.py: (ModelConfig, num_classes, synchronized_bn) -> Keras model
    STRATEGIES (train.strategy)         train/distribution.py: () -> tf.distribute strategy
    IMBALANCE_METHODS (experiment.methods)
                                        train/methods.py: an `ImbalanceMethod` (train.* overrides)
    RECIPES (planned by experiment; chosen by train.phase)
                                        train/recipes.py: a `Recipe` (a way of producing a model: its data,
                                        model preparation, fit, lineage, cost and place in the grid)

Owners import without TensorFlow (builders that need it import it when called), so this module,
`config.py` and `serengeti-tf --help` stay light. Losses and head re-balancing have owners of their
own, apart from `losses.py` / `rebalancing.py`, because those import Keras and TensorFlow at load.
"""

from __future__ import annotations

from serengeti_tf.registry import Registry

SAMPLERS = Registry("sampler", owner="serengeti_tf.data.sampling")
LOSSES = Registry("loss", owner="serengeti_tf.train.loss_choices")
CLASS_WEIGHTINGS = Registry("class weighting", owner="serengeti_tf.train.loss_choices")
HEAD_REBALANCINGS = Registry("head re-balancing", owner="serengeti_tf.train.head_choices")
SOURCE_FORMATS = Registry("source format", owner="serengeti_tf.data.sources")
MODELS = Registry("model", owner="serengeti_tf.models.choices")
STRATEGIES = Registry("strategy", owner="serengeti_tf.train.distribution")
IMBALANCE_METHODS = Registry("imbalance method", owner="serengeti_tf.train.methods")
RECIPES = Registry("recipe", owner="serengeti_tf.train.recipes")

# Kinds no setting names: the code picks them (a recipe by `train.phase` and the experiment's plan).
CHOSEN_BY_CODE = (RECIPES,)

ALL = (SAMPLERS, LOSSES, CLASS_WEIGHTINGS, HEAD_REBALANCINGS, SOURCE_FORMATS, MODELS, STRATEGIES,
       IMBALANCE_METHODS, RECIPES)
