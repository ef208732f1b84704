"""The list of commands `serengeti-tf` offers: one import and one entry per verb module."""

from serengeti_tf_cli.plan import plan

ALL = [plan]
