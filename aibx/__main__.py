from aibx.cli import main

raise SystemExit(main())
