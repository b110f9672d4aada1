"""Evaluation runners, one file per benchmark, each with its data reader beside it: ShapesWorld generation
(shapes.py, judged exactly) and editing (edit_shapes.py), COCO val5K (coco.py, coco_data.py), GenEval export
(geneval.py), PIE-Bench (pie_bench.py, pie_data.py); what they share (generation.py, scoring.py). The measures
they use live in agsm.metrics, the tables and grids they write in agsm.utils (markdown_tables, image_grids);
agsm.report reads their results and may import them, never the other way round."""
