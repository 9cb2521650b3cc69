"""Evaluation of hair edits: pairs files, the embedded default, the report."""
