from dlprof.cli import main

raise SystemExit(main())
