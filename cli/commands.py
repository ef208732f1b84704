"""The list of commands `serengeti-tf` offers: one import and one entry per verb module."""

ALL = []
