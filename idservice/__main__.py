"""Run the idservice command line (``python -m idservice``)."""

from idservice.entrypoints.cli import main

raise SystemExit(main())
