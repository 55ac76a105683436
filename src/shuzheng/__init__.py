"""Shuzheng (数政): an integrated government data platform."""

__version__ = "0.1.0"
