"""`python -m grdnet …` (also what `torchrun -m grdnet train …` runs)."""

from grdnet.cli import main

main()
