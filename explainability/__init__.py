"""Plain-Python explanations and chart builders. No Django here."""
