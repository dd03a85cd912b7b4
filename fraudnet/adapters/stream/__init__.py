"""stream adapter."""
