"""medtl: transfer learning for 2D medical image segmentation and classification."""

__version__ = "0.1.0"
