"""Densification strategies, chosen from the CLI: fixed count, 3DGS adaptive density control, or MCMC."""

from .base import FixedStrategy, Strategy
from .default import DefaultStrategy
from .mcmc import MCMCStrategy, relocated_opacity_and_scale

__all__ = ["FixedStrategy", "Strategy", "DefaultStrategy", "MCMCStrategy", "relocated_opacity_and_scale"]
