"""`python -m agsm.shapes.pretrain [--arch sd15|sd3] ...`: pretrain a tiny ShapesWorld base model.

The entry point only; the trainer (one loop, one recipe per architecture) is the package agsm.shapes.pretraining,
whose cli module documents the options (`python -m agsm.shapes.pretrain -h`).
"""

from .pretraining.cli import main

if __name__ == "__main__":
    main()
