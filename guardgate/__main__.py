"""``python -m guardgate``, as ``guardgate``."""

from guardgate.cli import main

raise SystemExit(main())
