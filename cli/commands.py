"""The list of commands `serengeti-tf` offers: one import and one entry per verb module."""

from serengeti_tf_cli.demo import demo
from serengeti_tf_cli.experiment import experiment
from serengeti_tf_cli.plan import plan
from serengeti_tf_cli.prepare import prepare

ALL = [plan, prepare, experiment, demo]
