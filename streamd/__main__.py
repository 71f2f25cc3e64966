from __future__ import annotations

from streamd.cli import main

raise SystemExit(main())
