"""Losses: identity (IR-SE50 or facenet), LPIPS, e4e's delta regularisation."""

from .id_loss import IDComparison, IDLoss
from .lpips_loss import LPIPSLoss
from .regularisation import delta_regularisation

__all__ = ["IDComparison", "IDLoss", "LPIPSLoss", "delta_regularisation"]
