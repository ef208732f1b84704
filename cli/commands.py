"""The list of commands `serengeti-tf` offers: one import and one entry per verb module."""

from serengeti_tf_cli.compare import compare
from serengeti_tf_cli.demo import demo
from serengeti_tf_cli.demo_data import demo_data
from serengeti_tf_cli.evaluate import evaluate
from serengeti_tf_cli.experiment import experiment
from serengeti_tf_cli.export import export_command
from serengeti_tf_cli.plan import plan
from serengeti_tf_cli.predict import predict
from serengeti_tf_cli.prepare import prepare
from serengeti_tf_cli.score_detections import score_detections
from serengeti_tf_cli.train import train_command

ALL = [plan, prepare, experiment, demo, demo_data, train_command, evaluate, compare, predict, score_detections,
       export_command]
