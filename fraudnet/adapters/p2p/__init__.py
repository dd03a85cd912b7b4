"""p2p adapter."""
