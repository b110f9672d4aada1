"""Evaluation: ShapesWorld (exact judge), editing on ShapesWorld, and real-model runners (COCO, GenEval export,
PIE-Bench, report) over the metrics of agsm.metrics."""
