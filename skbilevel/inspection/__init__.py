"""Plotting tools for fitted gradient searches."""

from ._search_path import SearchPathDisplay

__all__ = ["SearchPathDisplay"]
