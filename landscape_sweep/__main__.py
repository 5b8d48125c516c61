"""`python -m landscape_sweep [-m] key=value ...`: run one cell, or a sweep of cells with -m."""

from landscape_sweep.pipeline.app import main

if __name__ == "__main__":
    main()
