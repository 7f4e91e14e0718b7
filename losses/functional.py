"""The functional cores of every built-in loss, in one namespace."""

from losses.aam import aam_loss
from losses.apl import apl_loss, apl_official_loss, official_to_paper
from losses.asl import asl_loss
from losses.bce import bce_loss, focal_loss, poly1_loss
from losses.ranking import two_way_loss, zlpr_loss

__all__ = [
    "aam_loss",
    "apl_loss",
    "apl_official_loss",
    "asl_loss",
    "bce_loss",
    "focal_loss",
    "official_to_paper",
    "poly1_loss",
    "two_way_loss",
    "zlpr_loss",
]
