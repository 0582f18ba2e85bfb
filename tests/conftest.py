"""Shared test set-up: headless matplotlib and the smoke profile."""

import os

import matplotlib

matplotlib.use("Agg")
os.environ.setdefault("COURSE_PROFILE", "smoke")
