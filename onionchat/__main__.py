"""Run onionchat with ``python -m onionchat``."""

from onionchat.cli import main

raise SystemExit(main())
