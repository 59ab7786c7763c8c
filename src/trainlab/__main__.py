"""``python -m trainlab`` runs the command line."""
from trainlab.cli import main

raise SystemExit(main())
