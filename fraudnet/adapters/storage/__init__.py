"""storage adapter."""
