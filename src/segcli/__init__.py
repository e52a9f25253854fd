"""segcli: a command-line toolchain for 2-D semantic segmentation."""

__version__ = "0.1.0"
