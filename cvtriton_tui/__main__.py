from cvtriton_tui.cli import main

raise SystemExit(main())
