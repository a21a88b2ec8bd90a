"""`python -m batch_exporter.rerun`: the rerun-check command without the batch-exporter entry point."""
import sys

from .command import main

sys.exit(main())
