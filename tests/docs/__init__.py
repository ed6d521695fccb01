"""Tests that the documentation's examples are real code."""
