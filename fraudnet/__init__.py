"""fraudnet: a decentralized edge fraud-detection network for card payments."""

__version__ = "0.1.0"
