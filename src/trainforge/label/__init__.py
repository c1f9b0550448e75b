"""Spend labelling effort where the model is least sure: query strategies, Label Studio tasks out, annotations in."""
