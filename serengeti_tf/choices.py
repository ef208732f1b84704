"""Every kind of named choice, with the config key that names it and the module that registers
its names (its owner).

Config validation, the CLI's choices and help, the README's option table and report ordering read
these registries; the code that acts on a setting calls `lookup`. To add a choice, register its
builder in the owner (with its settings dataclass, if it has settings: see `registry.py`):

    kind (config key)                   owner: what a builder is
    SAMPLERS (sampler.name)             data/sampling.py: (counts, SamplerConfig) -> per-class targets
    REALISATIONS (sampler.realisation)  data/sampling.py: (class shards, plan, Config, seed) -> tf.data records
    LOSSES (train.loss)                 train/loss_choices.py: (TrainConfig, counts, class weights or None)
                                        -> Keras loss
    CLASS_WEIGHTINGS (train.class_weighting)
                                        train/loss_choices.py: (counts of the classes with images, beta)
                                        -> their raw weights, or None for no weighting
    OPTIMIZERS (train.optimizer)        train/optimizer_choices.py: (learning rate, backbone factor or None)
                                        -> Keras optimizer
    HEAD_REBALANCINGS (train.head_rebalancing)
                                        train/head_choices.py: (TrainConfig, HeadInputs) -> re-balanced head
                                        or None to leave it
    TAU_NORM_BIASES (train.tau_norm_bias)
                                        train/head_choices.py: (bias, per-class factor) -> new bias
    SOURCE_FORMATS (data.source_format, besides `auto`)
                                        data/sources/__init__.py: (metadata paths, image root) -> rows
    SPLIT_GROUPINGS (data.group_by)     data/split.py: (kept manifest rows, fractions, seed)
                                        -> (split per row, warnings)
    CROP_SELECTIONS (data.crops.select) data/crops.py: (usable boxes by image, best first) -> chosen boxes
    MODELS (model.name)                 models/choices.py: (ModelConfig, num_classes, synchronized_bn) -> Keras model
    EXPORT_FORMATS (export.format)      models/export_formats.py: the artefact writer `export.py` calls
    STRATEGIES (train.strategy)         train/distribution.py: () -> tf.distribute strategy
    IMBALANCE_METHODS (experiment.methods)
                                        train/methods.py: an `ImbalanceMethod` (train.* overrides)
    RECIPES (planned by experiment; chosen by train.phase)
                                        train/recipes.py: a `Recipe` (a way of producing a model: its data,
                                        model preparation, fit, lineage, cost and place in the grid)

Owners import without TensorFlow (builders that need it import it when called), so this module,
`config.py` and `serengeti-tf --help` stay light. Losses, optimizers, head re-balancing and export
formats have owners of their own, apart from `losses.py` / `optimizers.py` / `rebalancing.py` /
`export.py`, because those import Keras and TensorFlow at load.
"""

from __future__ import annotations

from serengeti_tf.registry import Registry

SAMPLERS = Registry("sampler", owner="serengeti_tf.data.sampling", key="sampler.name")
REALISATIONS = Registry("realisation", owner="serengeti_tf.data.sampling", key="sampler.realisation")
LOSSES = Registry("loss", owner="serengeti_tf.train.loss_choices", key="train.loss")
CLASS_WEIGHTINGS = Registry("class weighting", owner="serengeti_tf.train.loss_choices", key="train.class_weighting")
OPTIMIZERS = Registry("optimizer", owner="serengeti_tf.train.optimizer_choices", key="train.optimizer")
HEAD_REBALANCINGS = Registry("head re-balancing", owner="serengeti_tf.train.head_choices",
                             key="train.head_rebalancing")
TAU_NORM_BIASES = Registry("tau-norm bias rule", owner="serengeti_tf.train.head_choices", key="train.tau_norm_bias")
SOURCE_FORMATS = Registry("source format", owner="serengeti_tf.data.sources", key="data.source_format")
SPLIT_GROUPINGS = Registry("split grouping", owner="serengeti_tf.data.split", key="data.group_by")
CROP_SELECTIONS = Registry("crop selection", owner="serengeti_tf.data.crops", key="data.crops.select")
MODELS = Registry("model", owner="serengeti_tf.models.choices", key="model.name")
EXPORT_FORMATS = Registry("export format", owner="serengeti_tf.models.export_formats", key="export.format")
STRATEGIES = Registry("strategy", owner="serengeti_tf.train.distribution", key="train.strategy")
IMBALANCE_METHODS = Registry("imbalance method", owner="serengeti_tf.train.methods", key="experiment.methods")
RECIPES = Registry("recipe", owner="serengeti_tf.train.recipes")

# Kinds no setting names: the code picks them (a recipe by `train.phase` and the experiment's plan).
CHOSEN_BY_CODE = (RECIPES,)

# Every registry (tests iterate over it; keep it complete).
ALL = (SAMPLERS, REALISATIONS, LOSSES, CLASS_WEIGHTINGS, OPTIMIZERS, HEAD_REBALANCINGS, TAU_NORM_BIASES,
       SOURCE_FORMATS, SPLIT_GROUPINGS, CROP_SELECTIONS, MODELS, EXPORT_FORMATS, STRATEGIES, IMBALANCE_METHODS,
       RECIPES)
