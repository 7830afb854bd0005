"""Tests by domain, as the package is laid out; pipeline/ runs the real end-to-end graph."""
