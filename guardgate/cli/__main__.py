"""``python -m guardgate.cli``, as ``guardgate``."""

from guardgate.cli import main

raise SystemExit(main())
