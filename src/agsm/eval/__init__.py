"""Evaluation commands: ShapesWorld (exact judge); real-model metrics come later."""
