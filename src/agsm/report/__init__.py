"""What results look like: side-by-side tables of evaluated variants with charts and HTML (variants.py), image
grids with verdict frames (grids.py), and `agsm report`, any results files side by side (cli.py)."""
