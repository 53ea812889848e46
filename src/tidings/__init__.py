"""Tidings: compose a post once, route it through approval, publish it at an exact instant."""

__version__ = "0.1.0"
