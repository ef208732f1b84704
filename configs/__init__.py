"""YAML config files. A package only so they install with serengeti-tf (as `serengeti_tf_configs`)."""
