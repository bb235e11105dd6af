"""grdnet: ROI-aware industrial visual inspection (GRD-Net and companion anomaly-detection methods)."""

__version__ = "0.1.0"
